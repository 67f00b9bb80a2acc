"""tenant.yaml `senders`: identities outside the tenant's domains are refused at apply,
located; `send individual --from PERSON` sends as that person (headers at the sink)."""

from __future__ import annotations

import email
import email.policy

import pytest

from tests.cli import consentry, ok
from tests.inbound.files import CAMPAIGN, TENANT, build

DOMAIN = "acme-motors.example"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("jo: {email: jo@acme-motors.example", "jo: {email: jo@gmail.example"),
         ":18: senders.people.jo.email: 'jo@gmail.example' is not in the tenant's domains (acme-motors.example)"),
        (("bulk: {email: offers@acme-motors.example", "bulk: {email: offers@other.example"),
         ":13: senders.bulk.email: 'offers@other.example' is not in the tenant's domains"),
        (("reply_to: sales@acme-motors.example", "reply_to: sales@mail.acme-motors.example"),
         ":14: senders.reply_to: 'sales@mail.acme-motors.example' is not in the tenant's domains"),
        (("return_path: bounces@acme-motors.example", "return_path: bounces+x@acme-motors.example"),
         ":15: senders.return_path: 'bounces+x@acme-motors.example': no '+' here"),
        (("unsubscribe: unsubscribe@acme-motors.example", "unsubscribe: bounces@acme-motors.example"),
         ":16: senders.unsubscribe: the unsubscribe address must differ from return_path"),
        (("domains: [acme-motors.example]", "domains: [acme motors]"), ":12: senders.domains: 'acme motors' is not a domain name"),
        (('phone: "+15550100001"', 'phone: "call me"'), ":18: senders.people.jo.phone: 'call me' is not a phone number"),
        (("  people:", "  colour: red\n  people:"), ":17: senders.colour: unknown field"),
    ],
)
def test_identity_outside_the_tenant_is_refused_at_apply(tmp_path, sqlite_url, change, expected):
    path = tmp_path / "tenant.yaml"
    path.write_text(TENANT.replace(*change))
    ok("db", "init", "--db", sqlite_url)
    result = consentry("tenant", "apply", path, "--db", sqlite_url)
    assert result.code == 2, result
    assert f"{path}{expected}" in result.err, result.err


def test_a_campaign_sender_outside_the_domains_is_refused(tmp_path, sqlite_url):
    files = build(tmp_path, sqlite_url)
    files["campaign.yaml"].write_text(CAMPAIGN + "sender: {email: promo@elsewhere.example}\n")
    result = consentry("campaign", "check", files["campaign.yaml"], "--db", sqlite_url)
    assert result.code == 2
    assert f"{files['campaign.yaml']}:8: sender.email: 'promo@elsewhere.example' is not in the tenant's sender domains" in result.err


def test_without_senders_an_email_campaign_still_needs_its_sender(tmp_path, sqlite_url):
    files = build(tmp_path, sqlite_url)
    files["tenant.yaml"].write_text(TENANT.split("senders:")[0])
    ok("tenant", "apply", files["tenant.yaml"], "--db", sqlite_url)
    result = consentry("campaign", "check", files["campaign.yaml"], "--db", sqlite_url)
    assert result.code == 2 and "sender: an email campaign needs sender.email" in result.err


def individual(db: str, *extra: str, channel: str = "email", contact: str = "C1"):
    args = ["send", "individual", "--tenant", "acme-motors", "--contact", contact, "--channel", channel,
            "--body", "Hi, the SUV is ready for a test drive.", "--db", db, *extra]
    if channel == "email":
        args += ["--subject", "Your test drive"]
    return consentry(*args)


def test_send_individual_from_a_person(tmp_path, sqlite_url, capture):
    build(tmp_path, sqlite_url)
    assert individual(sqlite_url, "--from", "jo").code == 0
    assert individual(sqlite_url).code == 0
    mails = capture.call(capture.smtp.wait_for(2, timeout=20))
    by_jo, default = (email.message_from_bytes(m["raw"], policy=email.policy.default) for m in mails)
    assert by_jo["From"] == f"Jo Smith <jo@{DOMAIN}>" and by_jo["Reply-To"] == f"Jo Smith <jo@{DOMAIN}>"
    assert default["From"] == f"Acme Motors <offers@{DOMAIN}>" and default["Reply-To"] == f"sales@{DOMAIN}"
    for mail in mails:  # a bounce of a reply is tied to its delivery as well
        assert mail["from"].startswith("bounces+") and mail["from"].endswith(f"@{DOMAIN}")
        assert "consentry.invalid" not in mail["raw"].decode()
    # Texts go from the person's own number.
    assert individual(sqlite_url, "--from", "jo", channel="sms", contact="C2").code == 0
    texts = capture.call(capture.sms.wait_for(1, timeout=20))
    assert (texts[0]["from"], texts[0]["to"]) == ("+15550100001", "+12135550102")


def test_send_individual_from_someone_unknown_is_bad_input(tmp_path, sqlite_url, capture):
    build(tmp_path, sqlite_url)
    for value in ("kim", "kim@gmail.example"):
        result = individual(sqlite_url, "--from", value)
        assert result.code == 2 and f"--from: '{value}' is not one of the tenant's people (jo)" in result.err
    assert capture.smtp.messages == []
