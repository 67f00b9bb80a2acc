"""PostgreSQL's bulk path: COPY into a temporary staging table, then one merge statement.

`executemany` costs PostgreSQL a bind and an execute per row (a protocol message, an
executor start, the unique checks): 8,450 contact rows/s, a third of SQLite's
(docs/benchmarks-import.md). COPY streams a chunk's rows in asyncpg's binary format into a
temporary table in one round trip, and one INSERT ... SELECT ... ON CONFLICT then merges
them as a set, through the same conflict rules as the row-by-row statements
(statements.contact_conflict, statements.point_conflict), so both paths store the same
thing and the tests run on both databases.

Everything runs on the caller's connection inside its transaction: the staging table is
created `ON COMMIT DROP` (gone at commit or rollback, never seen by another session), and
COPY and the merge are statements of that transaction, so an import stays all or nothing.

Small writes (a webhook's one event, an API call of a few contacts) keep the row-by-row
statements: COPY costs an extra round trip (asyncpg reads the target's column types) and
the staging table a catalog entry, more than a few rows save.

Only for PostgreSQL with asyncpg; SQLite has no COPY and keeps `executemany`, which is
close to its own floor there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    false,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateTable

from engine.db.models import ConsentEvent, Contact, ContactPoint
from engine.imports.contact_rows import ContactRow
from engine.imports.statements import (
    CONTACT_FIELDS,
    EVENT_FIELDS,
    POINT_FIELDS,
    contact_conflict,
    point_conflict,
)

__all__ = ["STAGED_MIN_ROWS", "copy_events", "is_staged", "merge_contact_rows", "project_opted_out"]

# From this many rows on, a write goes through COPY. Below it the row-by-row statements
# win: a chunk of an import (4,000 rows) is far above, an API batch of ten far below.
STAGED_MIN_ROWS = 200

_contacts = Contact.__table__
_points = ContactPoint.__table__
_events = ConsentEvent.__table__

# The staging table holds ContactRow tuples exactly as the row checks return them (same
# columns, same order), so COPY takes the checked rows as they are, with no conversion.
# Plain `text`: the row checks have already enforced the schema's widths.
_stage = Table(
    "consentry_contact_stage",
    MetaData(),
    Column("line", Integer),
    *(Column(name, Text) for name in ("external_id", "first_name", "last_name", "timezone", "country", "region",
                                      "lead_source")),
    Column("opted_out", Boolean),
    Column("reviewed_at_us", BigInteger),
    Column("email", Text),
    Column("email_valid", Boolean),
    Column("phone", Text),
    Column("phone_valid", Boolean),
    Column("phone_zones", Text),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
assert tuple(_stage.c.keys()) == ContactRow._fields, "the staging table must mirror ContactRow"

_dialect = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]


def _sql(statement: Any) -> str:
    return str(statement.compile(dialect=_dialect))


def _positions(statement: Any) -> tuple[str, tuple[str, ...]]:
    """Driver SQL, and the names of its $1, $2... in order."""
    compiled = statement.compile(dialect=_dialect)
    return str(compiled), tuple(compiled.positiontup)


def _merge_statement() -> tuple[str, tuple[str, ...]]:
    """The staged rows upserted into contacts and their points; returns (external_id, id).

    Parameters: `tenant_id`, `stamp` (the write's instant). The points' INSERT is a second
    data-modifying CTE of the same statement: it reads the contacts' ids from the first
    one's RETURNING (it cannot see their rows), and the foreign-key checks run at the end
    of the statement, when the new contacts exist.
    """
    stage = _stage.c
    tenant_id = bindparam("tenant_id", type_=BigInteger)
    stamp = bindparam("stamp", type_=BigInteger)
    values = {
        "tenant_id": tenant_id, "external_id": stage.external_id, "first_name": stage.first_name,
        "last_name": stage.last_name, "timezone": stage.timezone, "country": stage.country, "region": stage.region,
        "lead_source": stage.lead_source, "opted_out": false(), "opted_out_changed_at_us": null(),
        "reviewed_at_us": stage.reviewed_at_us, "created_at_us": stamp, "updated_at_us": stamp,
    }
    rows = select(*(values[name] for name in CONTACT_FIELDS)).order_by(stage.line)  # ids in file order
    upserted = (
        contact_conflict(postgresql.insert(_contacts).from_select(list(CONTACT_FIELDS), rows))
        .returning(_contacts.c.external_id, _contacts.c.id)
        .cte("upserted")
    )

    def point(kind: str, address, is_valid, zones):
        return (
            select(tenant_id.label("tenant_id"), upserted.c.id.label("contact_id"), literal_column(f"'{kind}'").label("kind"),
                   address.label("address"), is_valid.label("is_valid"), zones.label("zones"),
                   stage.line.label("line"))
            .join_from(_stage, upserted, upserted.c.external_id == stage.external_id)
            .where(address.is_not(None))
        )

    points = union_all(
        point("email", stage.email, stage.email_valid, null()),
        point("phone", stage.phone, stage.phone_valid, stage.phone_zones),
    ).subquery("point")
    values = {**{name: points.c[name] for name in POINT_FIELDS if name != "updated_at_us"}, "updated_at_us": stamp}
    # In file order, email before phone: the order the row-by-row path inserts them in.
    point_rows = select(*(values[name] for name in POINT_FIELDS)).order_by(points.c.line, points.c.kind)
    written = point_conflict(postgresql.insert(_points).from_select(list(POINT_FIELDS), point_rows)).cte("points")
    return _positions(select(upserted.c.external_id, upserted.c.id).add_cte(written))


# Built once at import: pure functions of the schema.
_CREATE_STAGE = _sql(CreateTable(_stage, if_not_exists=True))
_MERGE, _MERGE_PARAMETERS = _merge_statement()
_PROJECT = """
UPDATE contacts AS c
SET opted_out = latest.value, opted_out_changed_at_us = latest.occurred_at_us
FROM (
    SELECT DISTINCT ON (contact_id) contact_id, occurred_at_us, value
    FROM unnest($1::bigint[], $2::bigint[], $3::boolean[]) WITH ORDINALITY AS e(contact_id, occurred_at_us, value, n)
    ORDER BY contact_id, occurred_at_us DESC, n DESC
) AS latest
WHERE c.id = latest.contact_id
  AND (c.opted_out_changed_at_us IS NULL OR c.opted_out_changed_at_us <= latest.occurred_at_us)
"""


def is_staged(conn: AsyncConnection, rows: Sequence[object]) -> bool:
    """Whether a write of `rows` takes the COPY path on this connection."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg" and len(rows) >= STAGED_MIN_ROWS


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under SQLAlchemy's, in the same transaction.

    SQLAlchemy's adapter begins the transaction on the first statement it runs; each
    caller here has already run one (the tenant lookup, the chunk's id lookup); if not,
    `SELECT 1` begins it, so COPY never runs outside the caller's transaction.
    """
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return driver


async def merge_contact_rows(
    conn: AsyncConnection, tenant_id: int, stamp: int, rows: Sequence[ContactRow]
) -> dict[str, int]:
    """Upsert `rows` (distinct external_ids) and their points; `external_id -> id` of each."""
    driver = await _driver(conn)
    # One staging table a transaction, emptied for each write (TRUNCATE of a table the
    # transaction created is a file swap, not a scan).
    await driver.execute(f"{_CREATE_STAGE}; TRUNCATE {_stage.name}")
    await driver.copy_records_to_table(_stage.name, records=rows, columns=ContactRow._fields)
    parameters = {"tenant_id": tenant_id, "stamp": stamp}
    return dict(await driver.fetch(_MERGE, *(parameters[name] for name in _MERGE_PARAMETERS)))


async def copy_events(conn: AsyncConnection, rows: Sequence[tuple]) -> None:
    """Append ledger rows (EVENT_FIELDS order) with COPY, in order.

    The ledger only ever appends, so COPY goes straight into consent_events: ids come from
    its sequence row by row in the order given, the order that breaks ties between events
    at the same instant, as with the row-by-row insert.
    """
    driver = await _driver(conn)
    await driver.copy_records_to_table(_events.name, records=rows, columns=EVENT_FIELDS)


async def project_opted_out(conn: AsyncConnection, opted: Sequence[tuple[int, int, bool]]) -> None:
    """The contacts.opted_out projection of `(contact_id, occurred_at_us, value)`, in
    ledger order, as one statement.

    Applied one by one, an event moves the flag when it is not older than the flag's last
    change, and then becomes that change; so the last event standing for a contact is its
    latest, the one recorded last among equals, provided it is not older than the stored
    change. That is what this statement writes, once per contact.
    """
    driver = await _driver(conn)
    contact_ids, instants, values = zip(*opted, strict=True)
    await driver.execute(_PROJECT, list(contact_ids), list(instants), list(values))
