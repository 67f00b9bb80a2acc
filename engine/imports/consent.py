"""`consentry consent import`: a consent events file appended to the ledger.

Same shape as the contacts import (one transaction, chunks checked in worker processes,
written in file order, every bad row reported). Before a chunk is checked its
external_ids are looked up, because the check needs each contact's id (an unknown one is
a bad row) and country (an `sms`/`voice` address is read with it). Rows are only ever
appended; ledger.record_event_rows moves the contacts' projections.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaigns.errors import InputError, InputErrors
from engine.clock import Clock
from engine.db.models import Contact
from engine.db.tenants import load_tenant
from engine.imports.consent_rows import (
    COLUMNS,
    REQUIRED,
    CheckedEvents,
    EventRules,
    check_event_rows,
)
from engine.imports.csv_source import CHUNK_ROWS, Chunk, CsvSource, Header
from engine.imports.ledger import record_event_rows
from engine.imports.parallel import DEFAULT_WORKERS, run_pipeline
from engine.imports.progress import ProgressCallback
from engine.imports.rejections import Rejections
from engine.imports.statements import contacts_by_external_id, refresh_statistics
from engine.imports.summary import ImportSummary
from gating import TenantPolicy
from metrics import default_instruments

__all__ = ["check_consent_events", "import_consent_events"]

_contacts = Contact.__table__


async def import_consent_events(
    engine: AsyncEngine,
    path: str,
    tenant: str,
    *,
    skip_invalid: bool = False,
    rejects_path: str | None = None,
    workers: int = DEFAULT_WORKERS,
    chunk_rows: int = CHUNK_ROWS,
    on_reject: Callable[[InputError], None] | None = None,
    on_progress: ProgressCallback | None = None,
    clock: Clock,
) -> ImportSummary:
    """Append a consent events CSV to a tenant's ledger (FORMATS.md, "Consent events").

    Error handling as for import_contacts: InputErrors and nothing written, unless
    `skip_invalid`.
    """
    with CsvSource(path, COLUMNS, REQUIRED, chunk_rows) as source:
        async with engine.begin() as conn:
            record = await load_tenant(conn, tenant)
            await refresh_statistics(conn)  # the contacts may have just been imported
            rules = EventRules.for_file(source.header, record.policy)
            rejections = Rejections(
                path, source.header, keep=not skip_invalid, rejects_path=rejects_path, on_reject=on_reject
            )
            writer = _EventWriter(
                conn, record.id, clock(), path, source.header, rejections, on_progress, atomic=not skip_invalid
            )
            try:
                await run_pipeline(
                    source.chunks(),
                    partial(check_event_rows, rules),
                    prepare=writer.prepare,
                    consume=writer.write,
                    workers=workers,
                )
            finally:
                rejections.close()
            if rejections.count and not skip_invalid:
                raise InputErrors(rejections.errors)  # leaves engine.begin(): rolled back
            await refresh_statistics(conn, ("consent_events",))
    # Committed: count what this import did (docs/operations.md, consentry_import_rows_total).
    default_instruments().record_import_rows(tenant, writer.summary.kind, writer.summary.outcomes)
    return writer.summary


async def check_consent_events(path: str, policy: TenantPolicy, *, workers: int = DEFAULT_WORKERS) -> ImportSummary:
    """Check an events file without a database (every external_id taken as known): the
    benchmark's validation-only pass."""
    summary = ImportSummary(path, "consent")
    with CsvSource(path, COLUMNS, REQUIRED) as source:
        rules = EventRules.for_file(source.header, policy)

        async def rows(chunk: Chunk) -> tuple:
            return (chunk.rows, None)

        async def count(chunk: Chunk, checked: CheckedEvents) -> None:
            summary.rows_read += len(chunk)
            summary.rejected += len(chunk.broken) + len({line for line, _, _ in checked.errors})

        await run_pipeline(source.chunks(), partial(check_event_rows, rules), prepare=rows, consume=count, workers=workers)
    return summary


def _contact_of(row: tuple) -> int:
    return row[1]


class _EventWriter:
    def __init__(
        self,
        conn: AsyncConnection,
        tenant_id: int,
        stamp: int,
        path: str,
        header: Header,
        rejections: Rejections,
        on_progress: ProgressCallback | None,
        *,
        atomic: bool,
    ) -> None:
        self.conn = conn
        self.atomic = atomic
        self.tenant_id = tenant_id
        self.stamp = stamp  # recorded_at of every event of this import
        self.external_id = header.index("external_id")
        self.rejections = rejections
        self.on_progress = on_progress
        self.summary = ImportSummary(path, "consent")

    async def prepare(self, chunk: Chunk) -> tuple:
        index = self.external_id
        ids = {cells[index].strip() for _, cells in chunk.rows}
        ids.discard("")
        contacts = await contacts_by_external_id(self.conn, self.tenant_id, sorted(ids), _contacts.c.country)
        return (chunk.rows, contacts)

    async def write(self, chunk: Chunk, checked: CheckedEvents) -> None:
        problems: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for line, _cells, field, message in chunk.broken:
            problems[line].append((field, message))
        for line, field, message in checked.errors:
            problems[line].append((field, message))

        # An atomic import that has rejected a row will roll back: writing more is wasted.
        if not (self.atomic and (self.rejections.count or problems)):
            tenant_id, stamp = self.tenant_id, self.stamp
            # In contact order: the ledger's index and the projections are keyed by contact,
            # so the database visits each page once per chunk (a fifth faster on a large
            # ledger). The sort is stable: one contact's events keep their file order, the
            # order that breaks ties between equal instants.
            rows = sorted(
                (
                    (tenant_id, row.contact_id, row.action, row.channel, row.class_code, row.party, row.address,
                     row.method, row.occurred_at_us, stamp, row.actor, row.basis, row.note, None, None, None, None)
                    for row in checked.rows
                ),
                key=_contact_of,
            )
            await record_event_rows(self.conn, rows)
            self.summary.events_recorded += len(rows)

        if problems:
            cells_at = {line: cells for line, cells in chunk.rows if line in problems}
            cells_at.update((line, cells) for line, cells, _, _ in chunk.broken)
            for line in sorted(problems):
                self.rejections.add(line, cells_at[line], problems[line])
            self.summary.rejected += len(problems)
        self.summary.rows_read += len(chunk)
        if self.on_progress is not None:
            self.on_progress(self.summary.rows_read, chunk.end_offset)
