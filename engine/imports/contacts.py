"""`consentry contacts import`: a contacts file into the database, streaming and atomic.

One transaction for the whole file. Chunks of rows are checked in worker processes
(contact_rows) and written here in file order with bulk statements; only errors are kept.
Without `--skip-invalid` any bad row rolls everything back and every error is reported.

Per chunk the writer:
1. looks up the chunk's external_ids (one query): who exists, and who this import has
   already written, which is how a repeated external_id is found on its later line
   without keeping a million ids in memory: rows written by this import carry its start
   instant in `updated_at_us`;
2. upserts the contacts (empty cells keep stored values), then their email and phone
   points (a changed address replaces the old one);
3. records an `opt_out` (method `import`, dated at the import's start) for each
   `opted_out=true` row whose contact is not opted out already; never an `opt_in`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaigns.errors import InputError, InputErrors
from engine.clock import Clock
from engine.db.models import Contact
from engine.db.tenants import load_tenant
from engine.imports.contact_rows import (
    COLUMNS,
    REQUIRED,
    CheckedContacts,
    ContactRules,
    check_contact_rows,
)
from engine.imports.contact_writes import write_contact_rows
from engine.imports.csv_source import CHUNK_ROWS, Chunk, CsvSource, Header
from engine.imports.ledger import record_event_rows
from engine.imports.parallel import DEFAULT_WORKERS, run_pipeline
from engine.imports.progress import ProgressCallback
from engine.imports.rejections import Rejections
from engine.imports.statements import (
    contacts_by_external_id,
    refresh_statistics,
)
from engine.imports.summary import ImportSummary
from gating import TenantPolicy
from metrics import default_instruments

__all__ = ["check_contacts", "import_contacts"]

_contacts = Contact.__table__


async def import_contacts(
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
    """Import a contacts CSV for a tenant (FORMATS.md, "Contacts").

    Raises InputErrors (every bad row; nothing written) unless `skip_invalid`, which writes
    the valid rows and passes each error to `on_reject`. `rejects_path` receives the
    rejected rows either way.
    """
    with CsvSource(path, COLUMNS, REQUIRED, chunk_rows) as source:
        async with engine.begin() as conn:
            record = await load_tenant(conn, tenant)
            rules = ContactRules.for_file(source.header, record.policy)
            rejections = Rejections(
                path, source.header, keep=not skip_invalid, rejects_path=rejects_path, on_reject=on_reject
            )
            writer = _ContactWriter(conn, record.id, clock(), path, source.header, rejections, on_progress)
            try:
                await run_pipeline(
                    source.chunks(),
                    partial(check_contact_rows, rules),
                    prepare=_rows,
                    consume=writer.write,
                    workers=workers,
                )
            finally:
                rejections.close()
            if rejections.count and not skip_invalid:
                raise InputErrors(rejections.errors)  # leaves engine.begin(): rolled back
            await refresh_statistics(conn, ("contacts", "contact_points", "consent_events"))
    # Committed: count what this import did (docs/operations.md, consentry_import_rows_total).
    default_instruments().record_import_rows(tenant, writer.summary.kind, writer.summary.outcomes)
    return writer.summary


async def check_contacts(path: str, policy: TenantPolicy, *, workers: int = DEFAULT_WORKERS) -> ImportSummary:
    """Check a contacts file without a database: the same reading and row checks, in the
    same processes, as an import (the benchmark's validation-only pass). Repeated
    external_ids are not looked for: that takes the database."""
    summary = ImportSummary(path, "contacts")
    with CsvSource(path, COLUMNS, REQUIRED) as source:
        rules = ContactRules.for_file(source.header, policy)

        async def count(chunk: Chunk, checked: CheckedContacts) -> None:
            summary.rows_read += len(chunk)
            summary.rejected += len(chunk.broken) + len({line for line, _, _ in checked.errors})

        await run_pipeline(
            source.chunks(), partial(check_contact_rows, rules), prepare=_rows, consume=count, workers=workers
        )
    return summary


async def _rows(chunk: Chunk) -> tuple:
    return (chunk.rows,)


class _ContactWriter:
    def __init__(
        self,
        conn: AsyncConnection,
        tenant_id: int,
        stamp: int,
        path: str,
        header: Header,
        rejections: Rejections,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        # The import's start instant: its opt_out events are dated at it (FORMATS.md), and
        # every contact it writes carries it in updated_at_us (the repeated-id check).
        self.stamp = stamp
        self.name = os.path.basename(path)
        self.external_id = header.index("external_id")
        self.rejections = rejections
        self.on_progress = on_progress
        self.summary = ImportSummary(path, "contacts")
        # external_id -> first line, for rows rejected in earlier chunks (written rows are
        # found in the database instead). Grows with errors only.
        self.rejected_ids: dict[str, int] = {}
        # When to refresh the planner's statistics next: each time the contacts created
        # by this import have doubled (statements.refresh_statistics).
        self.next_statistics = 1

    async def write(self, chunk: Chunk, checked: CheckedContacts) -> None:
        problems: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for line, _cells, field, message in chunk.broken:
            problems[line].append((field, message))
        for line, field, message in checked.errors:
            problems[line].append((field, message))

        ids = self._ids(chunk)
        existing = await contacts_by_external_id(
            self.conn,
            self.tenant_id,
            sorted({external_id for _, external_id in ids}),  # probes in index order
            _contacts.c.updated_at_us,
            _contacts.c.opted_out,
        )
        firsts = self._find_repeats(ids, existing, problems)

        valid = [row for row in checked.rows if row.line not in problems]
        await self._write_rows(valid, existing)

        self._reject(chunk, problems, firsts)
        self.summary.rows_read += len(chunk)
        if self.on_progress is not None:
            self.on_progress(self.summary.rows_read, chunk.end_offset)

    def _ids(self, chunk: Chunk) -> list[tuple[int, str]]:
        """(line, external_id) of every row of the chunk that has one, in line order."""
        index = self.external_id
        ids = [(line, cells[index].strip()) for line, cells in chunk.rows]
        if chunk.broken:
            ids += [(line, cells[index].strip()) for line, cells, _, _ in chunk.broken if index < len(cells)]
            ids.sort()
        return [(line, external_id) for line, external_id in ids if external_id]

    def _find_repeats(self, ids, existing, problems) -> dict[str, int]:
        """Marks each repeated external_id on its later line; returns first lines."""
        seen: dict[str, int] = {}
        for line, external_id in ids:
            first = seen.get(external_id) or self.rejected_ids.get(external_id)
            if first is None:
                found = existing.get(external_id)
                if found is not None and found[1] == self.stamp:
                    first = 0  # written by this import from an earlier chunk
            if first is None:
                seen[external_id] = line
                continue
            where = f"line {first}" if first else "an earlier line"
            message = f"{external_id!r} repeats {where} (external_id must be unique in the file)"
            problems[line].insert(0, ("external_id", message))
        return seen

    async def _write_rows(self, valid, existing) -> None:
        if not valid:
            return
        tenant_id, stamp = self.tenant_id, self.stamp
        contact_id, created = await write_contact_rows(self.conn, tenant_id, stamp, valid, existing)
        opt_outs = []
        for row in valid:
            cid = contact_id[row.external_id]
            found = existing.get(row.external_id)
            # Only a contact not opted out already gets an opt_out; false or empty never
            # records an opt_in (opting back in is an explicit consent event).
            if row.opted_out and (found is None or not found[2]):
                opt_outs.append(
                    (tenant_id, cid, "opt_out", None, None, None, None, "import", stamp, stamp,
                     None, None, f"contacts import {self.name} line {row.line}", None, None, None, None)
                )
        await record_event_rows(self.conn, opt_outs)

        self.summary.contacts_created += len(created)
        if self.summary.contacts_created >= self.next_statistics:
            await refresh_statistics(self.conn)
            self.next_statistics = 2 * self.summary.contacts_created
        self.summary.contacts_updated += len(valid) - len(created)
        self.summary.events_recorded += len(opt_outs)

    def _reject(self, chunk: Chunk, problems, firsts: dict[str, int]) -> None:
        if not problems:
            return
        cells_at = {line: cells for line, cells in chunk.rows if line in problems}
        cells_at.update((line, cells) for line, cells, _, _ in chunk.broken)
        for line in sorted(problems):
            self.rejections.add(line, cells_at[line], problems[line])
        for external_id, line in firsts.items():
            if line in problems:
                self.rejected_ids.setdefault(external_id, line)
        self.summary.rejected += len(problems)
