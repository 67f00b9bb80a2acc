"""A phone number's type, as `phonenumbers.number_type` decides it, for half the work.

`phonenumbers.number_type` first finds the number's region (for a shared country code
such as +1, by trying each region's type patterns in turn until one fits) and then runs
the same type patterns again for the region it found; every pattern test looks its
compiled regular expression up by its source text. On a contacts import that is 45 % of
the row checks' time (docs/benchmarks.md, "Third pass").

`number_type` here is the same decision, in the same order, over the same metadata: the
type found while looking for the region is kept instead of computed again, and each
metadata descriptor's pattern is compiled once. tests/imports/test_phone_types.py checks
it against `phonenumbers.number_type` on generated numbers of every region.
"""

from __future__ import annotations

import re
from functools import lru_cache

from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberType,
    national_significant_number,
)

__all__ = ["number_type"]

_UNKNOWN = PhoneNumberType.UNKNOWN


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _matches(nsn: str, desc) -> bool:
    # phonenumbers' _is_number_matching_desc: the lengths first, then the whole pattern
    # (its match-then-fullmatch without prefix matching is a fullmatch).
    if desc is None:
        return False
    lengths = desc.possible_length
    if lengths and len(nsn) not in lengths:
        return False
    pattern = desc.national_number_pattern
    if not pattern:
        return False
    return _compiled(pattern).fullmatch(nsn) is not None


def _type_in(nsn: str, metadata) -> int:
    """phonenumbers' _number_type_helper: the descriptors in its order."""
    if not _matches(nsn, metadata.general_desc):
        return _UNKNOWN
    for desc, kind in (
        (metadata.premium_rate, PhoneNumberType.PREMIUM_RATE),
        (metadata.toll_free, PhoneNumberType.TOLL_FREE),
        (metadata.shared_cost, PhoneNumberType.SHARED_COST),
        (metadata.voip, PhoneNumberType.VOIP),
        (metadata.personal_number, PhoneNumberType.PERSONAL_NUMBER),
        (metadata.pager, PhoneNumberType.PAGER),
        (metadata.uan, PhoneNumberType.UAN),
        (metadata.voicemail, PhoneNumberType.VOICEMAIL),
    ):
        if _matches(nsn, desc):
            return kind
    same = metadata.same_mobile_and_fixed_line_pattern
    if _matches(nsn, metadata.fixed_line):
        if same or _matches(nsn, metadata.mobile):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and _matches(nsn, metadata.mobile):
        return PhoneNumberType.MOBILE
    return _UNKNOWN


def number_type(number: PhoneNumber) -> int:
    """`phonenumbers.number_type(number)`."""
    country_code = number.country_code
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code) if country_code is not None else None
    if country_code is None or regions is None:
        return _UNKNOWN  # no region: number_type finds no metadata either
    nsn = national_significant_number(number)
    if len(regions) == 1:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, regions[0])
        return _UNKNOWN if metadata is None else _type_in(nsn, metadata)
    # phonenumbers' region_code_for_number over a shared country code: a region with
    # leading digits is chosen by them alone; any other by a type other than UNKNOWN,
    # which is then the number's type.
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if _compiled(metadata.leading_digits).match(nsn):
                found = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
                return _UNKNOWN if found is None else _type_in(nsn, found)
        else:
            kind = _type_in(nsn, metadata)
            if kind != _UNKNOWN:
                return kind
    return _UNKNOWN
