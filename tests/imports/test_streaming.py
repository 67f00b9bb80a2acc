"""A file of several chunks: checked in worker processes, written in order, still atomic.

The imports here read 1,000 rows a chunk (`--chunk-rows`; 4,000 by default, the same
code); 5,000 rows make five, so the process pool runs and repeated external_ids must be
found across chunks (the first one written, or rejected, chunks earlier). No timing here:
speed is bench/bench_import.py's business.
"""

from __future__ import annotations

ROWS = 5_000
CHUNK = ("--chunk-rows", "1000")  # five chunks of ROWS


def _contacts(workspace, name="many.csv"):
    rows = [
        f"C{i:05d},First{i},Last,user{i}@Example.com,(415) 555-{i % 10_000:04d},,US,,Website,"
        f"{'true' if i % 10 == 0 else ''},2025-01-01"
        for i in range(ROWS)
    ]
    rows[1] = "C00001,,,bad@@example.com,,,,,,,"  # line 3, rejected in the first chunk
    rows += [
        "C00001,,,,,,,,,,",  # repeats a rejected row four chunks back
        "C00002,,,,,,,,,,",  # repeats a row written four chunks back
        "C99999,,,,call me,,,,,,",
    ]
    return workspace.contacts_file(*rows, name=name)


def test_a_large_file_in_worker_processes(workspace):
    path = _contacts(workspace)

    # Atomic across chunks: the bad rows are in the first and the last one.
    result = workspace.import_contacts(path, "acme", "--workers", "2", *CHUNK)
    assert result.code == 2
    assert [line for line in result.err.splitlines() if line.startswith("error: ")] == [
        f"error: {path}:3: email: 'bad@@example.com' is not an email address (expected local@domain with one @)",
        f"error: {path}:5002: external_id: 'C00001' repeats line 3 (external_id must be unique in the file)",
        f"error: {path}:5003: external_id: 'C00002' repeats an earlier line (external_id must be unique in the file)",
        f"error: {path}:5004: phone: 'call me' is not a phone number (no digits of a phone number)",
    ]
    assert workspace.snapshot() == {"contacts": [], "contact_points": [], "consent_events": []}

    # Worker processes store what the importing process stores.
    pooled = workspace.import_contacts(path, "acme", "--skip-invalid", "--workers", "2", *CHUNK)
    inline = workspace.import_contacts(path, "globex", "--skip-invalid", "--workers", "0", *CHUNK)
    for result in (pooled, inline):
        assert result.code == 0, result.err
        assert result.out.strip() == (
            f"{path}: 5003 rows read, 4999 contacts created, 0 updated, 500 consent events recorded, 4 rejected"
        )

    def stored(tenant):
        return workspace.query(
            "SELECT c.external_id, c.first_name, c.opted_out, c.reviewed_at_us, p.kind, p.address, p.is_valid, p.zones"
            " FROM contacts c JOIN tenants t ON t.id = c.tenant_id"
            " JOIN contact_points p ON p.tenant_id = c.tenant_id AND p.contact_id = c.id WHERE t.code = :tenant"
            " ORDER BY c.external_id, p.kind",
            tenant=tenant,
        )

    acme = stored("acme")
    assert len(acme) == 2 * 4_999
    assert acme[:2] == [
        ("C00000", "First0", True, acme[0][3], "email", "user0@example.com", True, None),
        ("C00000", "First0", True, acme[0][3], "phone", "+14155550000", True, "America/Los_Angeles"),
    ]
    # Every point belongs to its own contact (ids of created contacts are not looked up on
    # SQLite: see statements.new_contact_ids).
    assert all(row[5] == f"user{int(row[0][1:])}@example.com" for row in acme if row[4] == "email")
    assert all(row[5] == f"+1415555{int(row[0][1:]) % 10_000:04d}" for row in acme if row[4] == "phone")
    # The tenants' time zones differ, so reviewed_at differs; everything else is the same.
    assert [row[:3] + row[4:] for row in acme] == [row[:3] + row[4:] for row in stored("globex")]


def test_progress_is_reported_per_chunk_up_to_the_whole_file(workspace):
    import asyncio
    import io

    from engine.clock import system_clock
    from engine.db.session import make_engine
    from engine.imports import import_contacts
    from engine.imports.progress import progress_bar

    path = workspace.contacts_file(*(f"P{i},,,,,,,,,," for i in range(9_000)), name="progress.csv")
    seen = []

    async def run():
        engine = make_engine(workspace.url)
        try:
            return await import_contacts(engine, str(path), "acme", workers=0, on_progress=lambda *p: seen.append(p),
                                        clock=system_clock)
        finally:
            await engine.dispose()

    summary = asyncio.run(run())
    assert summary.contacts_created == 9_000
    assert [rows for rows, _ in seen] == [4_000, 8_000, 9_000]
    assert seen[-1][1] == path.stat().st_size
    with progress_bar("import", 100, io.StringIO()) as advance:  # not a terminal: no bar
        assert advance is None


def test_chunk_rows_sets_the_rows_read_at_a_time(workspace):
    """`--chunk-rows` (the large-file test above relies on it for five chunks of 1,000)."""
    path = workspace.contacts_file(*(f"K{i},,,,,,,,,," for i in range(2_500)), name="chunks.csv")
    result = workspace.import_contacts(path, "acme", "--workers", "0", "--chunk-rows", "1000")
    assert result.code == 0, result.err
    seen = []

    async def run():
        from engine.clock import system_clock
        from engine.db.session import make_engine
        from engine.imports import import_contacts

        engine = make_engine(workspace.url)
        try:
            return await import_contacts(engine, str(path), "globex", workers=0, chunk_rows=1_000,
                                         on_progress=lambda *p: seen.append(p), clock=system_clock)
        finally:
            await engine.dispose()

    import asyncio

    assert asyncio.run(run()).contacts_created == 2_500
    assert [rows for rows, _ in seen] == [1_000, 2_000, 2_500]
    assert workspace.import_contacts(path, "acme", "--chunk-rows", "0").code == 2  # at least one row a chunk
