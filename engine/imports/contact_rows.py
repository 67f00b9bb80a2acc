"""Checking the rows of a contacts file (FORMATS.md, "Contacts"): cells in, stored values out.

This is the CPU-bound half of a contacts import (phone numbers above all: 17 µs a row on
mostly North American numbers, 37 without addresses.py's fast path for them), so it runs
in worker processes on chunks of rows: pure functions of their arguments, with no
database, no clock and no IO. Everything a row check needs from the tenant travels in
`ContactRules`.

What it cannot see from one row, it leaves to the writer: whether an `external_id` repeats
an earlier line of the file, and what the database already holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from engine.imports.addresses import AddressError, normalize_email, normalize_phone
from engine.imports.cells import (
    CellError,
    check_length,
    parse_country,
    parse_date_or_datetime,
    parse_flag,
    parse_timezone,
)
from engine.imports.csv_source import Header
from gating import TenantPolicy

__all__ = ["COLUMNS", "REQUIRED", "CheckedContacts", "ContactRow", "ContactRules", "check_contact_rows"]

COLUMNS = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "country",
    "region",
    "lead_source",
    "opted_out",
    "reviewed_at",
)
REQUIRED = ("external_id",)

# Column widths of the schema (engine/db/models.py); PostgreSQL refuses longer values.
_LIMITS = {"external_id": 200, "first_name": 200, "last_name": 200, "region": 100, "lead_source": 200}
_ADDRESS_LIMIT = 320


@dataclass(frozen=True, slots=True)
class ContactRules:
    """What checking a row needs: where each column is, and the tenant's defaults."""

    positions: tuple[int, ...]  # for each of COLUMNS, its index in the file's rows, or -1
    country: str  # reads phone numbers of contacts without a country
    timezone: str  # reads reviewed_at dates and naive date-times

    @classmethod
    def for_file(cls, header: Header, policy: TenantPolicy) -> ContactRules:
        return cls(
            positions=tuple(header.index(column) for column in COLUMNS),
            country=policy.country,
            timezone=policy.timezone,
        )


class ContactRow(NamedTuple):
    """A valid row in stored form. None means "empty cell": the stored value is kept."""

    line: int
    external_id: str
    first_name: str | None
    last_name: str | None
    timezone: str | None
    country: str | None
    region: str | None
    lead_source: str | None
    opted_out: bool
    reviewed_at_us: int | None
    email: str | None
    email_valid: bool
    phone: str | None
    phone_valid: bool
    phone_zones: str | None


class CheckedContacts(NamedTuple):
    rows: list[ContactRow]
    errors: list[tuple[int, str, str]]  # (line, field, message), in line then column order


def check_contact_rows(rules: ContactRules, rows: list[tuple[int, list[str]]]) -> CheckedContacts:
    """Check a chunk of `(line, cells)`; every problem of every row is reported."""
    valid: list[ContactRow] = []
    errors: list[tuple[int, str, str]] = []
    positions = rules.positions
    for line, cells in rows:
        values = [cells[i].strip() if i >= 0 else "" for i in positions]
        problems: list[tuple[int, str, str]] = []
        row = _check(rules, line, values, problems)
        if problems:
            errors.extend(problems)
        else:
            assert row is not None  # _check returns None exactly when it reported problems
            valid.append(row)
    return CheckedContacts(valid, errors)


def _check(rules: ContactRules, line: int, values: list[str], problems: list) -> ContactRow | None:
    (external_id, first_name, last_name, email, phone, timezone, country, region, lead_source,
     opted_out, reviewed_at) = values

    def bad(field: str, message: str) -> None:
        problems.append((line, field, message))

    def limited(field: str, text: str) -> str | None:
        if not text:
            return None
        try:
            return check_length(text, _LIMITS[field])
        except CellError as exc:
            bad(field, str(exc))
            return None

    if not external_id:
        bad("external_id", "is required")
    limited("external_id", external_id)
    first_name_value = limited("first_name", first_name)
    last_name_value = limited("last_name", last_name)

    # The phone is read with the row's country, so the country is parsed first; its error
    # is reported in its own column's place below.
    country_value = country_error = None
    if country:
        try:
            country_value = parse_country(country)
        except CellError as exc:
            country_error = str(exc)

    email_value, email_valid = None, False
    if email:
        try:
            email_value, email_valid = normalize_email(email)
            check_length(email_value, _ADDRESS_LIMIT)
        except AddressError as exc:
            bad("email", exc.message)
        except CellError as exc:
            bad("email", str(exc))

    phone_value, phone_valid, zones = None, False, None
    if phone:
        try:
            phone_value, phone_valid, zones = normalize_phone(phone, country_value or rules.country)
            check_length(phone_value, _ADDRESS_LIMIT)
        except AddressError as exc:
            bad("phone", exc.message)
        except CellError as exc:
            bad("phone", str(exc))

    timezone_value = None
    if timezone:
        try:
            timezone_value = parse_timezone(timezone)
        except CellError as exc:
            bad("timezone", str(exc))
    if country_error:
        bad("country", country_error)
    region_value = limited("region", region)
    lead_source_value = limited("lead_source", lead_source)

    flag = False
    try:
        flag = parse_flag(opted_out)
    except CellError as exc:
        bad("opted_out", str(exc))

    reviewed_at_us = None
    if reviewed_at:
        try:
            reviewed_at_us = parse_date_or_datetime(reviewed_at, rules.timezone)
        except CellError as exc:
            bad("reviewed_at", str(exc))

    if problems:
        return None
    return ContactRow(
        line, external_id, first_name_value, last_name_value, timezone_value, country_value,
        region_value, lead_source_value, flag, reviewed_at_us, email_value, email_valid,
        phone_value, phone_valid, zones,
    )
