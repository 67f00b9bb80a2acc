"""PostgreSQL's COPY path stores exactly what SQLite's row-by-row statements store.

On PostgreSQL a write of STAGED_MIN_ROWS rows or more goes through COPY into a staging
table and one merge statement (engine/imports/staging.py); SQLite always runs the
row-by-row statements. The same files, imported with the same clock into both databases,
must leave the same contacts, points, ledger and opted_out projection; and a bad row still
leaves PostgreSQL untouched.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime

from engine.cli import main
from engine.imports.staging import STAGED_MIN_ROWS
from engine.timeutil import to_us
from tests.cli import Result
from tests.imports.conftest import CONTACTS_HEADER, EVENTS_HEADER, TENANT, Workspace

ROWS = 3 * STAGED_MIN_ROWS
FIRST = to_us(datetime(2026, 1, 5, 9, tzinfo=UTC))
SECOND = to_us(datetime(2026, 2, 5, 9, tzinfo=UTC))
THIRD = to_us(datetime(2026, 3, 5, 9, tzinfo=UTC))


def run(url: str, at_us: int, *args: object) -> Result:
    """The real command line, with the clock at `at_us`."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([*map(str, args), "--db", url], clock=lambda: at_us)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def first_file(i: int) -> str:
    email = f"person{i}@Example.com" if i % 7 else ""
    phone = f"(415) 555-{i:04d}" if i % 5 else ""
    zone = "America/New_York" if i % 3 == 0 else ""
    opted = "true" if i % 4 == 0 else ("false" if i % 4 == 1 else "")
    reviewed = "2025-06-01" if i % 6 == 0 else ""
    return f"C{i:04d},First{i},Last{i},{email},{phone},{zone},US,CA,Website,{opted},{reviewed}"


def second_file(i: int) -> str:
    """Every other contact again, with empty cells (kept), changed or same addresses,
    opted_out on contacts already out and new ones; and new contacts after them."""
    email = f"moved{i}@example.org" if i % 3 == 0 else (f"person{i}@example.com" if i % 3 == 1 else "")
    phone = "+44 7400 123456" if i % 10 == 0 else ""
    country = "GB" if i % 10 == 0 else ""
    opted = "true" if i % 8 in (0, 2) else ""
    return f"C{i:04d},,Renamed{i},{email},{phone},,{country},,,{opted},"


def events_file() -> list[str]:
    """Opt-outs and opt-ins older and newer than the imports' own, some at one instant (the
    one recorded last wins), and grants and blocks naming addresses."""
    rows = []
    for i in range(ROWS):
        contact = f"C{i % 150:04d}"
        day = 1 + i % 28
        month = ("2025-12", "2026-02", "2026-02")[i % 3]
        occurred = f"{month}-{day:02d}T10:00:00Z" if i % 9 else "2026-02-20T10:00:00Z"
        action = ("opt_out", "opt_in", "grant", "block", "opt_out", "opt_in")[i % 6]
        channel = {"grant": "email", "block": "sms"}.get(action, "")
        klass = "marketing" if action == "grant" else ""
        address = f"(415) 555-{i % 150:04d}" if action == "block" and i % 2 else ""
        rows.append(f"{contact},{action},{channel},{klass},,{address},web_form,{occurred},,,row {i}")
    return rows


def stored(url: str) -> dict[str, list[tuple]]:
    """The tenant's tables by external_id and in ledger order: ids come from a sequence on
    PostgreSQL (an upsert that updates still takes one), from the rowid on SQLite."""
    workspace = Workspace(url, None)  # type: ignore[arg-type]
    tables = {
        "contacts": "SELECT c.external_id, c.first_name, c.last_name, c.timezone, c.country, c.region,"
                    " c.lead_source, c.opted_out, c.opted_out_changed_at_us, c.reviewed_at_us, c.created_at_us,"
                    " c.updated_at_us FROM contacts c ORDER BY c.tenant_id, c.external_id",
        "points": "SELECT c.external_id, p.kind, p.address, p.is_valid, p.zones, p.updated_at_us FROM contact_points p"
                  " JOIN contacts c ON c.id = p.contact_id ORDER BY p.tenant_id, c.external_id, p.kind",
        "ledger": "SELECT c.external_id, e.action, e.channel, e.class_code, e.party, e.address, e.method,"
                  " e.occurred_at_us, e.recorded_at_us, e.note FROM consent_events e"
                  " JOIN contacts c ON c.id = e.contact_id ORDER BY e.id",
    }
    return {
        name: [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in workspace.query(sql)]
        for name, sql in tables.items()
    }


def import_all(url: str, directory) -> list[Result]:
    tenant = directory / "acme.yaml"
    tenant.write_text(TENANT.format(code="acme", country="US", timezone="America/Los_Angeles"), encoding="utf-8")
    first = directory / "first.csv"
    first.write_text("\n".join([CONTACTS_HEADER, *map(first_file, range(ROWS))]) + "\n", encoding="utf-8")
    second = directory / "second.csv"
    rows = [second_file(i) for i in range(0, ROWS, 2)] + [first_file(i) for i in range(ROWS, ROWS + STAGED_MIN_ROWS)]
    second.write_text("\n".join([CONTACTS_HEADER, *rows]) + "\n", encoding="utf-8")
    events = directory / "events.csv"
    events.write_text("\n".join([EVENTS_HEADER, *events_file()]) + "\n", encoding="utf-8")
    assert run(url, FIRST, "db", "init").code == 0
    assert run(url, FIRST, "tenant", "apply", tenant).code == 0
    return [
        run(url, FIRST, "contacts", "import", first, "--tenant", "acme"),
        run(url, SECOND, "contacts", "import", second, "--tenant", "acme"),
        run(url, THIRD, "consent", "import", events, "--tenant", "acme"),
    ]


def test_postgresql_stores_what_sqlite_stores(sqlite_url, fresh_postgres_url, tmp_path):
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "postgres").mkdir()
    on_sqlite = import_all(sqlite_url, tmp_path / "sqlite")
    on_postgres = import_all(fresh_postgres_url, tmp_path / "postgres")

    for result in on_sqlite + on_postgres:
        assert result.code == 0, result.err
    assert [r.out.split(": ", 1)[1] for r in on_postgres] == [r.out.split(": ", 1)[1] for r in on_sqlite]
    assert on_postgres[0].out.endswith(f"{ROWS} rows read, {ROWS} contacts created, 0 updated, "
                                       f"{ROWS // 4} consent events recorded, 0 rejected\n")

    expected = stored(sqlite_url)
    assert stored(fresh_postgres_url) == expected
    # The files did exercise what they are meant to: moved addresses, kept cells, both
    # values of the projection, and opt-outs at the imports' own instants.
    contacts = {row[0]: row for row in expected["contacts"]}
    assert contacts["C0002"][1:3] == ("First2", "Renamed2")
    assert {row[7] for row in expected["contacts"]} == {0, 1}
    assert ("C0006", "email", "moved6@example.org", 1, None, SECOND) in expected["points"]
    assert any(row[1] == "opt_out" and row[7] == SECOND for row in expected["ledger"])


def test_a_bad_row_after_a_staged_chunk_leaves_postgresql_untouched(fresh_postgres_url, tmp_path):
    workspace = Workspace(fresh_postgres_url, tmp_path)
    workspace.ok("db", "init")
    workspace.ok("tenant", "apply", workspace.file("acme.yaml", TENANT.format(
        code="acme", country="US", timezone="America/Los_Angeles")))
    good = [first_file(i) for i in range(ROWS)]
    assert workspace.import_contacts(workspace.contacts_file(*good[:STAGED_MIN_ROWS], name="base.csv")).code == 0
    before = workspace.snapshot()

    # 5,000 rows: a first chunk of 4,000 is merged through COPY before the bad row, in the
    # second chunk, is read; the whole import still rolls back.
    rows = [first_file(i) for i in range(5000)]
    rows[4500] = "C4500,,,not-an-email,,,,,,,"
    path = workspace.contacts_file(*rows, name="bad.csv")
    result = workspace.import_contacts(path)
    assert result.code == 2
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}:4502: email: 'not-an-email' ")
    assert workspace.snapshot() == before

    # The same for the ledger: 4,000 events appended with COPY, then an unknown contact.
    events = workspace.events_file(*[f"C{i % 150:04d},opt_out,,,,,web_form,2026-01-01T00:00:00Z,,,"
                                     for i in range(5000)], "C9999,opt_in,,,,,web_form,2026-01-01T00:00:00Z,,,")
    result = workspace.import_events(events)
    assert result.code == 2
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {events}:5002: external_id: ")
    assert workspace.snapshot() == before
