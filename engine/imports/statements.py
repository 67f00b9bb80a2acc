"""The SQL that imports and the ledger run, written with SQLAlchemy Core, run in bulk.

Statements are Core constructs (dialect-aware: SQLite and PostgreSQL share `INSERT ... ON
CONFLICT`, not every spelling), compiled once per dialect into the driver's own SQL and
run with `exec_driver_sql` on lists of tuples: sqlite3 `executemany` in one call, asyncpg's
pipelined `executemany`. Passing dictionaries through `Connection.execute` costs about
25 µs a row in bind processing, more than SQLite spends storing the row, and would make
the database half of an import slower than the validation half
(docs/benchmarks-import.md).

Lookups by many external_ids bind one parameter (a JSON array on SQLite, a text[] on
PostgreSQL) instead of expanding an IN list of thousands of parameters per chunk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.db.models import ConsentEvent, Contact, ContactPoint

__all__ = [
    "CONTACT_FIELDS",
    "EVENT_FIELDS",
    "POINT_FIELDS",
    "Prepared",
    "contact_conflict",
    "contacts_by_external_id",
    "executemany",
    "highest_contact_id",
    "new_contact_ids",
    "point_conflict",
    "prepared",
    "refresh_statistics",
]

_contacts = Contact.__table__
_points = ContactPoint.__table__
_events = ConsentEvent.__table__

CONTACT_FIELDS = (
    "tenant_id", "external_id", "first_name", "last_name", "timezone", "country", "region",
    "lead_source", "opted_out", "opted_out_changed_at_us", "reviewed_at_us", "created_at_us",
    "updated_at_us",
)
POINT_FIELDS = ("tenant_id", "contact_id", "kind", "address", "is_valid", "zones", "updated_at_us")
EVENT_FIELDS = (
    "tenant_id", "contact_id", "action", "channel", "class_code", "party", "address", "method",
    "occurred_at_us", "recorded_at_us", "actor", "basis", "note", "cause", "wording_id", "wording_version",
    "linked_from",
)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Driver SQL and, when its placeholders are not in field order, how to reorder."""

    sql: str
    order: tuple[int, ...] | None


async def executemany(conn: AsyncConnection, statement: Prepared, rows: Sequence[tuple]) -> None:
    """Run a prepared statement once per row tuple, in one driver call."""
    if not rows:
        return
    if statement.order is not None:
        order = statement.order
        rows = [tuple(row[i] for i in order) for row in rows]
    await conn.exec_driver_sql(statement.sql, list(rows))


def prepared(conn: AsyncConnection, name: str) -> Prepared:
    """A named statement compiled for this connection's dialect (cached per dialect)."""
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, dialect.paramstyle, name)
    statement = _COMPILED.get(key)
    if statement is None:
        statement = _COMPILED[key] = _compile(dialect, name)
    return statement


# A memo of pure compilations: the same SQL for every engine of one dialect and driver.
_COMPILED: dict[tuple[str, str, str, str], Prepared] = {}


def _compile(dialect: Dialect, name: str) -> Prepared:
    statement, fields = _BUILDERS[name](dialect)
    if isinstance(statement, tuple):  # (construct, column_keys) of an INSERT
        statement, keys = statement
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    else:
        compiled = statement.compile(dialect=dialect)
    names = compiled.positiontup or ()
    order = tuple(fields.index(n) for n in names)
    if len(set(order)) != len(fields):  # a field the SQL does not use is a bug here
        raise RuntimeError(f"statement {name} binds {names}, expected {fields}")
    return Prepared(str(compiled), None if order == tuple(range(len(fields))) else order)


def _insert(dialect: Dialect):
    def insert(table):
        # inline(): no implicit RETURNING of the new key, which executemany cannot return.
        module = postgresql if dialect.name == "postgresql" else sqlite
        return module.insert(table).inline()

    return insert


def contact_conflict(insert):
    """The contacts upsert's ON CONFLICT, for an INSERT of CONTACT_FIELDS (the row-by-row
    statement here, the staged merge of engine/imports/staging.py).

    Upsert by (tenant, external_id). An empty cell arrives as NULL and keeps the stored
    value (COALESCE), so a partial file never erases data. `opted_out` is only written
    for new contacts (false): the flag is a projection of the ledger, moved by
    ledger.record_event_rows when an opt_out is recorded.
    """
    new = insert.excluded
    keep = {
        name: func.coalesce(getattr(new, name), _contacts.c[name])
        for name in ("first_name", "last_name", "timezone", "country", "region", "lead_source", "reviewed_at_us")
    }
    return insert.on_conflict_do_update(
        index_elements=[_contacts.c.tenant_id, _contacts.c.external_id],
        set_={**keep, "updated_at_us": new.updated_at_us},
    )


def point_conflict(insert):
    """The contact points upsert's ON CONFLICT, for an INSERT of POINT_FIELDS.

    One point per (contact, kind): a changed address replaces the old one. Ledger events
    name addresses themselves, so events about the old address keep their meaning.
    """
    new = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[_points.c.tenant_id, _points.c.contact_id, _points.c.kind],
        set_={
            "address": new.address,
            "is_valid": new.is_valid,
            "zones": new.zones,
            "updated_at_us": new.updated_at_us,
        },
        # Re-importing an unchanged list rewrites nothing.
        where=or_(
            _points.c.address != new.address,
            _points.c.is_valid != new.is_valid,
            _points.c.zones.is_distinct_from(new.zones),
        ),
    )


def _upsert_contacts(dialect: Dialect):
    return (contact_conflict(_insert(dialect)(_contacts)), CONTACT_FIELDS), CONTACT_FIELDS


def _upsert_points(dialect: Dialect):
    return (point_conflict(_insert(dialect)(_points)), POINT_FIELDS), POINT_FIELDS


def _insert_events(dialect: Dialect):
    return (_insert(dialect)(_events), EVENT_FIELDS), EVENT_FIELDS


def _project_opted_out(_dialect: Dialect):
    # The contacts.opted_out projection follows the latest opt_out/opt_in; at equal
    # instants the event recorded last wins, the order gating reads the ledger in.
    # By primary key alone: with `tenant_id = ?` too, PostgreSQL's generic plan for a
    # table that was empty when the import began walks the (tenant_id, lead_source, id)
    # index, a whole tenant per row. Callers pass ids of the tenant's own contacts.
    statement = (
        update(_contacts)
        .where(
            _contacts.c.id == bindparam("contact_id"),
            or_(
                _contacts.c.opted_out_changed_at_us.is_(None),
                _contacts.c.opted_out_changed_at_us <= bindparam("occurred_at_us"),
            ),
        )
        .values(opted_out=bindparam("value"), opted_out_changed_at_us=bindparam("occurred_at_us"))
    )
    return statement, ("contact_id", "occurred_at_us", "value")


_BUILDERS = {
    "upsert_contacts": _upsert_contacts,
    "upsert_points": _upsert_points,
    "insert_events": _insert_events,
    "project_opted_out": _project_opted_out,
}


def _external_ids_param(conn: AsyncConnection, external_ids: Sequence[str]):
    if conn.dialect.name == "postgresql":
        clause = _contacts.c.external_id == any_(bindparam("ids", type_=ARRAY(String)))
        return clause, list(external_ids)
    values: Select[Any] = select(literal_column("value")).select_from(func.json_each(bindparam("ids")))
    return _contacts.c.external_id.in_(values), json.dumps(list(external_ids))


async def contacts_by_external_id(
    conn: AsyncConnection, tenant_id: int, external_ids: Sequence[str], *columns
) -> dict[str, tuple]:
    """`external_id -> (id, *columns)` for those of the ids the tenant has."""
    if not external_ids:
        return {}
    clause, ids = _external_ids_param(conn, external_ids)
    query = select(_contacts.c.external_id, _contacts.c.id, *columns).where(
        _contacts.c.tenant_id == tenant_id, clause
    )
    rows = (await conn.execute(query, {"ids": ids})).all()
    return {row[0]: tuple(row[1:]) for row in rows}


async def new_contact_ids(
    conn: AsyncConnection, tenant_id: int, created: Sequence[str], highest_before: int | None
) -> dict[str, int]:
    """`external_id -> id` of contacts an upsert has just created, in insertion order.

    On SQLite, when the highest id grew by exactly the number of contacts created, they got
    the ids after `highest_before` in order (SQLite gives a new row the highest rowid plus
    one; with the write lock held nobody else inserts), so no lookup is needed. Otherwise,
    and on PostgreSQL, they are looked up.
    """
    if highest_before is not None:
        highest = await highest_contact_id(conn)
        if highest == highest_before + len(created):
            return {external_id: highest_before + 1 + n for n, external_id in enumerate(created)}
    return {external_id: found[0] for external_id, found in (await contacts_by_external_id(conn, tenant_id, created)).items()}


async def highest_contact_id(conn: AsyncConnection) -> int | None:
    """The highest contacts.id (0 for none) on SQLite; None elsewhere (ids come from a
    sequence there, and are looked up)."""
    if conn.dialect.name != "sqlite":
        return None
    return (await conn.execute(select(func.coalesce(func.max(_contacts.c.id), 0)))).scalar_one()


async def refresh_statistics(conn: AsyncConnection, tables: tuple[str, ...] = ("contacts",)) -> None:
    """Let PostgreSQL's planner see how many rows there are now (SQLite: nothing).

    A first import fills a table the planner believes empty, and the plans it caches for
    the prepared lookups (a generic plan after five runs) then walk the whole tenant for
    every id: quadratic, minutes for 100,000 rows. ANALYZE inside the import's transaction
    counts the transaction's own rows and invalidates those plans. At the end of an import
    the tables it filled are analysed too, so the first `campaign check` after a bulk load
    does not plan against an empty table before autovacuum gets to it (we measured a 100,000
    contact check at 63 s without, 1.6 s with). A role that may not analyze the table gets a
    warning, not an error.
    """
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
