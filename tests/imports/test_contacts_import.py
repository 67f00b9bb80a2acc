"""`consentry contacts import` against SQLite and PostgreSQL: what is stored, what is refused."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from engine.timeutil import to_us

LA = ZoneInfo("America/Los_Angeles")


def error_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error: ")]


def test_a_new_contact_is_stored_normalised(workspace):
    path = workspace.contacts_file(
        "C1,Ann,Lee,Ann.Lee@Example.COM,(415) 555-0123,America/New_York,us,CA,Website,,2025-03-01",
        "C2,Bob,,bob@bad..example,555,,,,,no,2025-03-01T09:30:00",
        "C3,Cy,,cy@example.co.uk,020 7946 0958,,GB,,,,2025-03-01T09:30:00+00:00",
    )
    result = workspace.import_contacts(path)
    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"{path}: 3 rows read, 3 contacts created, 0 updated, 0 consent events recorded, 0 rejected"
    )

    ann = workspace.contact("C1")
    assert (ann["first_name"], ann["last_name"], ann["timezone"], ann["country"], ann["region"]) == (
        "Ann", "Lee", "America/New_York", "US", "CA"
    )
    assert ann["lead_source"] == "Website" and not ann["opted_out"]
    # A date is the start of that day in the tenant's time zone.
    assert ann["reviewed_at_us"] == to_us(datetime(2025, 3, 1, tzinfo=LA))
    assert workspace.points("C1") == {
        "email": ("Ann.Lee@example.com", True, None),
        "phone": ("+14155550123", True, "America/Los_Angeles"),
    }

    # Shaped like addresses but not valid: stored as given, flagged, for invalid_address.
    assert workspace.points("C2") == {"email": ("bob@bad..example", False, None), "phone": ("555", False, None)}
    # A naive date-time is read in the tenant's time zone.
    assert workspace.contact("C2")["reviewed_at_us"] == to_us(datetime(2025, 3, 1, 9, 30, tzinfo=LA))

    # The row's country reads its phone number.
    assert workspace.points("C3")["phone"] == ("+442079460958", True, "Europe/London")
    assert workspace.contact("C3")["reviewed_at_us"] == to_us(datetime(2025, 3, 1, 9, 30, tzinfo=UTC))


def test_the_tenants_country_reads_phone_numbers_without_one(workspace):
    path = workspace.contacts_file("C1,,,,020 7946 0958,,,,,,")
    assert workspace.import_contacts(path, "globex").code == 0
    assert workspace.points("C1", "globex")["phone"] == ("+442079460958", True, "Europe/London")


def test_a_zone_database_folder_or_an_overlong_zone_is_a_bad_cell(workspace):
    """`America` and `Etc` are folders of the zone database, and a 300-letter name is too
    long for a file name: each must be reported on its line, not crash the import."""
    path = workspace.contacts_file("C1,,,,,America,,,,,", "C2,,,,,Etc,,,,,", "C3,,,,," + "Z" * 300 + ",,,,,")
    result = workspace.import_contacts(path)
    assert result.code == 2
    assert error_lines(result) == [
        f"error: {path}:2: timezone: 'America' is not an IANA time zone (e.g. America/New_York)",
        f"error: {path}:3: timezone: 'Etc' is not an IANA time zone (e.g. America/New_York)",
        f"error: {path}:4: timezone: '{'Z' * 300}' is not an IANA time zone (e.g. America/New_York)",
    ]


def test_every_bad_row_is_reported_and_nothing_is_written(workspace):
    workspace.import_contacts(workspace.contacts_file("K1,Kept,,kept@example.com,,,,,,,", name="first.csv"))
    before = workspace.snapshot()

    path = workspace.contacts_file(
        "C1,Ann,,ann@example.com,(415) 555-0123,,,,,,",
        "C2,,,two@@example.com,,,,,,,",
        "C3,,,,call me maybe,,,,,,",
        ",,,nobody@example.com,,,,,,,",
        "C5,,,,,Mars/Olympus,,,,,",
        "C6,,,,,,XX,,,,",
        "C7,,,,,,,,,perhaps,",
        "C8,,,,,,,,,,31/12/2024",
        "C9,,,no-at-sign,not a number,Nowhere,ZZ,,,maybe,yesterday",
        "K1,Changed,,,,,,,,true,",
    )
    result = workspace.import_contacts(path)

    assert result.code == 2
    assert error_lines(result) == [
        f"error: {path}:3: email: 'two@@example.com' is not an email address (expected local@domain with one @)",
        f"error: {path}:4: phone: 'call me maybe' is not a phone number (no digits of a phone number)",
        f"error: {path}:5: external_id: is required",
        f"error: {path}:6: timezone: 'Mars/Olympus' is not an IANA time zone (e.g. America/New_York)",
        f"error: {path}:7: country: 'XX' is not an ISO 3166 alpha-2 country code",
        f"error: {path}:8: opted_out: 'perhaps' is not one of true, false, yes, no, 1, 0",
        f"error: {path}:9: reviewed_at: '31/12/2024' is not an ISO 8601 date or date-time",
        f"error: {path}:10: email: 'no-at-sign' is not an email address (expected local@domain with one @)",
        f"error: {path}:10: phone: 'not a number' is not a phone number (no digits of a phone number)",
        f"error: {path}:10: timezone: 'Nowhere' is not an IANA time zone (e.g. America/New_York)",
        f"error: {path}:10: country: 'ZZ' is not an ISO 3166 alpha-2 country code",
        f"error: {path}:10: opted_out: 'maybe' is not one of true, false, yes, no, 1, 0",
        f"error: {path}:10: reviewed_at: 'yesterday' is not an ISO 8601 date or date-time",
    ]
    assert result.out == ""
    # Atomic: the valid rows (C1, and K1's change and opt-out) were rolled back too.
    assert workspace.snapshot() == before


def test_a_repeated_external_id_is_reported_on_its_later_line(workspace):
    path = workspace.contacts_file(
        "C1,First,,,,,,,,,",
        "C2,,,,,,,,,,",
        "C1,Second,,,,,,,,,",
        "C1,Third,,bad@@x,,,,,,,",
    )
    result = workspace.import_contacts(path)
    assert result.code == 2
    assert error_lines(result) == [
        f"error: {path}:4: external_id: 'C1' repeats line 2 (external_id must be unique in the file)",
        f"error: {path}:5: external_id: 'C1' repeats line 2 (external_id must be unique in the file)",
        f"error: {path}:5: email: 'bad@@x' is not an email address (expected local@domain with one @)",
    ]
    assert workspace.query("SELECT count(*) FROM contacts") == [(0,)]


def test_header_problems_make_the_whole_file_bad_even_when_skipping(workspace, tmp_path):
    unknown = workspace.contacts_file("C1,x,a@example.com", header="external_id,nickname,email")
    result = workspace.import_contacts(unknown, "acme", "--skip-invalid", "--rejects", tmp_path / "r.csv")
    assert result.code == 2
    assert error_lines(result) == [
        f"error: {unknown}:1: nickname: unknown column (known columns: external_id, first_name, last_name, "
        "email, phone, timezone, country, region, lead_source, opted_out, reviewed_at)"
    ]

    twice = workspace.contacts_file("C1,a@example.com,b@example.com", header="external_id,email,email")
    assert error_lines(workspace.import_contacts(twice)) == [
        f"error: {twice}:1: email: column appears more than once"
    ]

    no_id = workspace.contacts_file("Ann,a@example.com", header="first_name,email")
    assert error_lines(workspace.import_contacts(no_id)) == [
        f"error: {no_id}:1: external_id: required column is missing"
    ]

    empty = workspace.file("empty.csv", "")
    result = workspace.import_contacts(empty)
    assert result.code == 2 and error_lines(result)[0].startswith(f"error: {empty}:1: no header row")
    assert workspace.query("SELECT count(*) FROM contacts") == [(0,)]


def test_rows_of_the_wrong_width_and_multi_line_cells(workspace):
    path = workspace.contacts_file(
        'C1,"Ann\nMarie",,,,,,,,,',  # lines 2-3: a quoted cell over two lines
        "C2,too,few",  # line 4
        "",  # a blank line is skipped
        "C3,,,,,,,,,,,extra",  # line 6
    )
    result = workspace.import_contacts(path)
    assert error_lines(result) == [
        f"error: {path}:4: row: has 3 fields, the header has 11",
        f"error: {path}:6: row: has 12 fields, the header has 11",
    ]


def test_skip_invalid_writes_the_valid_rows_and_the_rejects_file(workspace, tmp_path):
    path = workspace.contacts_file(
        "C1,Ann,,ann@example.com,,,,,,,",
        "C2,Bob,,bob@@example.com,,,,,,,",
        "C3,Cy,,,,Mars/Base,,,,maybe,",
        "C1,Again,,,,,,,,,",
        "C4,Dee,,,,,,,,true,",
        "C5,too,few",
    )
    rejects = tmp_path / "rejects.csv"
    result = workspace.import_contacts(path, "acme", "--skip-invalid", "--rejects", rejects)

    assert result.code == 0, result.err
    assert result.out.strip() == (
        f"{path}: 6 rows read, 2 contacts created, 0 updated, 1 consent events recorded, 4 rejected"
    )
    assert [line for line in result.err.splitlines() if line.startswith("rejected: ")] == [
        f"rejected: {path}:3: email: 'bob@@example.com' is not an email address (expected local@domain with one @)",
        f"rejected: {path}:4: timezone: 'Mars/Base' is not an IANA time zone (e.g. America/New_York)",
        f"rejected: {path}:4: opted_out: 'maybe' is not one of true, false, yes, no, 1, 0",
        f"rejected: {path}:5: external_id: 'C1' repeats line 2 (external_id must be unique in the file)",
        f"rejected: {path}:7: row: has 3 fields, the header has 11",
    ]
    assert [row[0] for row in workspace.query("SELECT external_id FROM contacts ORDER BY id")] == ["C1", "C4"]
    assert workspace.contact("C1")["first_name"] == "Ann"

    with open(rejects, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [*CONTACT_COLUMNS, "error"]
    assert [row[:-1] for row in rows[1:]] == [
        ["C2", "Bob", "", "bob@@example.com", "", "", "", "", "", "", ""],
        ["C3", "Cy", "", "", "", "Mars/Base", "", "", "", "maybe", ""],
        ["C1", "Again", "", "", "", "", "", "", "", "", ""],
        ["C5", "too", "few", "", "", "", "", "", "", "", ""],
    ]
    assert rows[2][-1] == (
        f"{path}:4: timezone: 'Mars/Base' is not an IANA time zone (e.g. America/New_York); "
        f"{path}:4: opted_out: 'maybe' is not one of true, false, yes, no, 1, 0"
    )


CONTACT_COLUMNS = [
    "external_id", "first_name", "last_name", "email", "phone", "timezone", "country", "region",
    "lead_source", "opted_out", "reviewed_at",
]


def test_reimport_updates_and_empty_or_absent_cells_keep_stored_values(workspace):
    workspace.import_contacts(
        workspace.contacts_file(
            "C1,Ann,Lee,ann@example.com,(415) 555-0123,America/New_York,US,CA,Website,,2025-01-01"
        )
    )
    created = workspace.contact("C1")

    result = workspace.import_contacts(workspace.contacts_file("C1,Annie,,,,,,,,,", "C2,New,,,,,,,,,"))
    assert result.out.strip().endswith("1 contacts created, 1 updated, 0 consent events recorded, 0 rejected")
    partial = workspace.contacts_file("C1,Fullpath", header="external_id,lead_source", name="partial.csv")
    assert workspace.import_contacts(partial).code == 0

    updated = workspace.contact("C1")
    assert updated["id"] == created["id"] and updated["created_at_us"] == created["created_at_us"]
    assert updated["updated_at_us"] > created["updated_at_us"]
    assert (updated["first_name"], updated["last_name"], updated["lead_source"]) == ("Annie", "Lee", "Fullpath")
    assert (updated["timezone"], updated["country"], updated["reviewed_at_us"]) == (
        created["timezone"], created["country"], created["reviewed_at_us"]
    )
    assert workspace.points("C1") == {
        "email": ("ann@example.com", True, None),
        "phone": ("+14155550123", True, "America/Los_Angeles"),
    }
    assert workspace.query("SELECT count(*) FROM contacts") == [(2,)]


def test_a_changed_address_replaces_the_point_and_the_ledger_keeps_the_old_one(workspace):
    workspace.import_contacts(workspace.contacts_file("C1,,,old@example.com,(415) 555-0123,,,,,,"))
    block = workspace.events_file("C1,block,email,,,old@example.com,email_link,2025-01-01T00:00:00Z,,,")
    assert workspace.import_events(block).code == 0

    changed = workspace.contacts_file("C1,,,New@Example.com,+1 212 555 0199,,,,,,", name="changed.csv")
    assert workspace.import_contacts(changed).code == 0

    assert workspace.points("C1") == {
        "email": ("New@example.com", True, None),
        "phone": ("+12125550199", True, "America/New_York"),
    }
    assert workspace.query("SELECT count(*) FROM contact_points") == [(2,)]
    assert [event[:6] for event in workspace.events("C1")] == [
        ("block", "email", None, None, "old@example.com", "email_link")
    ]


def test_opted_out_is_recorded_once_and_never_as_an_opt_in(workspace):
    first = workspace.contacts_file("C1,,,,,,,,,TRUE,", "C2,,,,,,,,,yes,", "C3,,,,,,,,,0,")
    result = workspace.import_contacts(first)
    assert "2 consent events recorded" in result.out
    c1 = workspace.contact("C1")
    assert c1["opted_out"] and c1["opted_out_changed_at_us"] is not None
    assert not workspace.contact("C3")["opted_out"]

    # The opt_out is dated at the import: between the clock before and after it.
    ((occurred, recorded, method),) = workspace.query(
        "SELECT occurred_at_us, recorded_at_us, method FROM consent_events e"
        " JOIN contacts c ON c.id = e.contact_id WHERE c.external_id = 'C1'"
    )
    assert occurred == recorded == c1["opted_out_changed_at_us"] and method == "import"

    again = workspace.contacts_file("C1,,,,,,,,,true,", "C2,,,,,,,,,false,", "C3,,,,,,,,,,", name="again.csv")
    result = workspace.import_contacts(again)
    assert "0 consent events recorded" in result.out
    assert [e[0] for e in workspace.events("C1")] == ["opt_out"]
    # false does not opt C2 back in: that takes an explicit consent event.
    assert [e[0] for e in workspace.events("C2")] == ["opt_out"]
    assert workspace.contact("C2")["opted_out"]
    assert workspace.query("SELECT count(*) FROM consent_events WHERE action = 'opt_in'") == [(0,)]

    # Opted back in by a consent event, a later opted_out=true is a new opt-out.
    opt_in = workspace.events_file("C1,opt_in,,,,,verbal,2025-01-01T00:00:00Z,,,")
    future_opt_in = workspace.events_file("C2,opt_in,,,,,verbal,2999-01-01T00:00:00Z,,,", name="later.csv")
    assert workspace.import_events(opt_in).code == 0
    assert workspace.contact("C1")["opted_out"]  # the opt-in is older than the import's opt-out
    assert workspace.import_events(future_opt_in).code == 0
    assert not workspace.contact("C2")["opted_out"]
    third = workspace.contacts_file("C2,,,,,,,,,true,", name="third.csv")
    assert "1 consent events recorded" in workspace.import_contacts(third).out
    assert [e[0] for e in workspace.events("C2")] == ["opt_out", "opt_in", "opt_out"]
    # ...but the projection follows the latest event, the opt-in dated 2999.
    assert not workspace.contact("C2")["opted_out"]


def test_reimports_never_erase_ledger_history(workspace):
    workspace.import_contacts(workspace.contacts_file("C1,,,a@example.com,,,,,,true,"))
    events = workspace.events_file(
        "C1,grant,email,marketing,,,web_form,2025-01-01T00:00:00Z,,,",
        "C1,revoke,sms,*,third,,written,2025-01-02T00:00:00+01:00,,,",
    )
    workspace.import_events(events)
    before = workspace.query("SELECT * FROM consent_events ORDER BY id")
    for name in ("r1.csv", "r2.csv"):
        workspace.import_contacts(workspace.contacts_file("C1,,,b@example.com,,,,,,false,", name=name))
    assert workspace.query("SELECT * FROM consent_events ORDER BY id") == before


def test_two_tenants_with_the_same_external_id_are_two_contacts(workspace):
    workspace.import_contacts(workspace.contacts_file("C1,Acme,,a@acme.example,,,,,,true,"), "acme")
    workspace.import_contacts(workspace.contacts_file("C1,Globex,,g@globex.example,,,,,,,", name="g.csv"), "globex")
    assert workspace.contact("C1", "acme")["first_name"] == "Acme"
    assert workspace.contact("C1", "globex")["first_name"] == "Globex"
    assert workspace.points("C1", "globex") == {"email": ("g@globex.example", True, None)}
    assert workspace.contact("C1", "acme")["opted_out"] and not workspace.contact("C1", "globex")["opted_out"]
    assert workspace.events("C1", "globex") == []
    # An event file for one tenant does not see the other's contacts.
    only_acme = workspace.contacts_file("A9,,,,,,,,,,", name="a9.csv")
    workspace.import_contacts(only_acme, "acme")
    result = workspace.import_events(workspace.events_file("A9,opt_out,,,,,verbal,2025-01-01T00:00:00Z,,,"), "globex")
    assert result.code == 2 and ": external_id: no contact 'A9' in this tenant" in result.err


def test_an_unknown_tenant_is_bad_input(workspace):
    result = workspace.import_contacts(workspace.contacts_file("C1,,,,,,,,,,"), "initech")
    assert result.code == 2
    assert result.err.startswith("error: tenant 'initech' not found")


def test_excel_exports_byte_order_mark_and_crlf(workspace):
    path = workspace.directory / "excel.csv"
    path.write_bytes(
        ("\ufeff" + "external_id,email,opted_out\r\nC1,a@example.com,Yes\r\nC2,b@example.com,\r\n").encode("utf-8")
    )
    result = workspace.import_contacts(path)
    assert result.code == 0, result.err
    assert workspace.points("C1") == {"email": ("a@example.com", True, None)}
    assert workspace.contact("C1")["opted_out"] and not workspace.contact("C2")["opted_out"]


def test_bytes_that_are_not_utf8_reject_their_row(workspace):
    path = workspace.directory / "latin1.csv"
    path.write_bytes(b"external_id,first_name\nC1,Ren\xe9\nC2,Ok\n")
    result = workspace.import_contacts(path)
    assert error_lines(result) == [f"error: {path}:2: row: is not valid UTF-8 text"]


def test_broken_quoting_and_nul_characters_reject_their_rows(workspace, tmp_path):
    path = workspace.directory / "quotes.csv"
    path.write_bytes(
        b"external_id,first_name\n"
        b'C1,"Ann"e\n'  # text after a closing quote
        b"C2,O\"Brien\n"  # a quote inside an unquoted cell is just a character
        b"C3,a\x00b\n"
        b'C4,"never closed\n'
        b"C5,swallowed\n"
    )
    result = workspace.import_contacts(path)
    assert result.code == 2
    assert error_lines(result) == [
        f"error: {path}:2: row: unreadable CSV (',' expected after '\"'); line 2 skipped",
        f"error: {path}:4: row: contains a NUL character",
        f"error: {path}:5: row: unreadable CSV (unexpected end of data); lines 5-6 skipped",
    ]
    rejects = tmp_path / "rejects.csv"
    result = workspace.import_contacts(path, "acme", "--skip-invalid", "--rejects", rejects)
    assert result.code == 0
    assert workspace.contact("C2")["first_name"] == 'O"Brien'
    assert workspace.query("SELECT count(*) FROM contacts") == [(1,)]
    with open(rejects, newline="") as handle:
        assert [row[:2] for row in csv.reader(handle)] == [
            ["external_id", "first_name"], ["", ""], ["C3", "a\x00b"], ["", ""]
        ]
