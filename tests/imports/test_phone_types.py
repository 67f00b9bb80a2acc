"""phone_types.number_type is phonenumbers.number_type: every region's example numbers of
every type, and generated numbers of every country code."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumber, PhoneNumberType

from engine.imports.phone_types import number_type

_TYPES = [value for name, value in vars(PhoneNumberType).items() if name.isupper()]
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _examples(region: str) -> list[PhoneNumber]:
    found = [phonenumbers.example_number_for_type(region, kind) for kind in _TYPES]
    found += [phonenumbers.invalid_example_number(region)]
    return [number for number in found if number is not None]


@pytest.mark.parametrize("region", _REGIONS)
def test_every_regions_examples_of_every_type(region):
    numbers = _examples(region)
    assert numbers, f"phonenumbers has no example for {region}"
    for number in numbers:
        assert number_type(number) == phonenumbers.number_type(number), phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164
        )


def test_non_geographic_entities():
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            assert number_type(number) == phonenumbers.number_type(number)


def _number(country_code: int, digits: str, zeros: int) -> PhoneNumber:
    number = PhoneNumber(country_code=country_code, national_number=int(digits))
    if zeros:
        number.italian_leading_zero = True
        number.number_of_leading_zeros = zeros
    return number


_COUNTRY_CODES = st.sampled_from(sorted(COUNTRY_CODE_TO_REGION_CODE) + [0, 999])


@settings(max_examples=3000)
@given(country_code=_COUNTRY_CODES, digits=st.text(alphabet="0123456789", min_size=1, max_size=17),
       zeros=st.integers(min_value=0, max_value=2))
@example(country_code=1, digits="4155550123", zeros=0)  # US, found by trying the +1 regions
@example(country_code=1, digits="4165550123", zeros=0)  # CA, after the US patterns fail
@example(country_code=1, digits="2642351234", zeros=0)  # AI: a region chosen by leading digits
@example(country_code=7, digits="7012345678", zeros=0)  # KZ under RU's shared code
@example(country_code=39, digits="612345678", zeros=1)  # an Italian leading zero
@example(country_code=800, digits="12345678", zeros=0)  # a non-geographic entity
def test_generated_numbers(country_code, digits, zeros):
    number = _number(country_code, digits, zeros)
    assert number_type(number) == phonenumbers.number_type(number)


@settings(max_examples=2000)
@given(region=st.sampled_from(_REGIONS), digits=st.text(alphabet="0123456789", min_size=3, max_size=15),
       shape=st.sampled_from(["{}", "+{}", "0{}", "00{}", "+1 {}", "({}) "]))
def test_parsed_text(region, digits, shape):
    try:
        number = phonenumbers.parse(shape.format(digits), region)
    except phonenumbers.NumberParseException:
        return
    assert number_type(number) == phonenumbers.number_type(number)
