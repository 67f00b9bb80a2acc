"""campaign.yaml and tenant.yaml validation: every error names the file, line and field."""

from __future__ import annotations

import pytest

from campaigns.definition import load_campaign, validate_against_policy
from campaigns.errors import InputErrors
from campaigns.tenant_file import load_tenant_file
from gating import TenantPolicy

GOOD = """\
campaign: spring-service-offer
tenant: acme-motors
kind: bulk
channel: email
class: marketing
party: first
audience:
  lead_source: [Website, Fullpath]
template: spring_offer
subject: "Your spring service offer"
sender: {email: service@acme.example, name: Acme Service}
rate: {per_second: 50}
"""


def write(tmp_path, text, name="campaign.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(call, *args):
    with pytest.raises(InputErrors) as caught:
        call(*args)
    return [str(e) for e in caught.value.errors]


def test_a_good_definition_loads(tmp_path):
    definition = load_campaign(write(tmp_path, GOOD))
    assert definition.code == "spring-service-offer"
    assert definition.model.audience.lead_source == ["Website", "Fullpath"]
    assert definition.model.rate.per_second == 50


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("channel: email", "channel: fax"), ":4: channel: Input should be 'email' or 'sms'"),
        (("kind: bulk", "kind: blast"), ":3: kind: Input should be 'bulk' or 'individual'"),
        (("party: first", "party: fourth"), ":6: party:"),
        (("rate: {per_second: 50}", "rate: {per_second: -1}"), ":12: rate.per_second:"),
        (("audience:\n  lead_source", "audience:\n  colour: red\n  lead_source"), ":8: audience.colour: unknown field"),
        (('subject: "Your spring service offer"\n', ""), "subject: an email campaign needs a subject"),
        (("channel: email", "channel: sms"), ":11: sender: an SMS campaign needs sender.phone"),
    ],
)
def test_bad_definitions_name_line_and_field(tmp_path, change, expected):
    path = write(tmp_path, GOOD.replace(*change))
    messages = errors_of(load_campaign, path)
    assert any(expected in message for message in messages), messages
    assert all(message.startswith(str(path)) for message in messages)


def test_email_sender_on_an_sms_campaign_is_rejected_at_its_line(tmp_path):
    text = GOOD.replace("channel: email", "channel: sms").replace('subject: "Your spring service offer"\n', "")
    text = text.replace("sender: {email: service@acme.example, name: Acme Service}", "sender:\n  email: service@acme.example\n  phone: '+15550001111'")
    messages = errors_of(load_campaign, write(tmp_path, text))
    assert any(":11: sender.email: an SMS campaign sends from a phone number" in m for m in messages), messages


def test_class_must_exist_in_the_tenant_policy(tmp_path):
    definition = load_campaign(write(tmp_path, GOOD.replace("class: marketing", "class: newsletter")))
    messages = errors_of(validate_against_policy, definition, TenantPolicy.from_mapping(
        {"tenant": "acme-motors", "classes": {"marketing": {}, "service": {}}}), None)
    assert messages == [f"{tmp_path / 'campaign.yaml'}:5: class: class 'newsletter' is not in tenant 'acme-motors''s policy (known: marketing, service)"]


def test_invalid_yaml_is_located(tmp_path):
    with pytest.raises(Exception) as caught:
        load_campaign(write(tmp_path, "campaign: [unclosed\n"))
    assert f"{tmp_path / 'campaign.yaml'}:2:" in str(caught.value)


TENANT = """\
tenant: acme-motors
name: Acme Motors
regime: opt_out
country: US
timezone: America/Los_Angeles
classes:
  marketing: {mode: opt_out}
  survey: {}
quiet_hours: {start: "21:00", end: "08:00"}
"""


def test_tenant_defaults_are_filled_in(tmp_path):
    policy, _source = load_tenant_file(write(tmp_path, TENANT, "tenant.yaml"))
    assert policy["classes"]["survey"] == {"mode": None}
    assert policy["sms"]["opt_out_footer"] == "Reply STOP to opt out of texts from this number."
    assert policy["review"] == {"period_days": 183, "enforce": False}
    assert policy["frequency_caps"] == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("timezone: America/Los_Angeles", "timezone: Mars/Olympus"), ":5: timezone: 'Mars/Olympus' is not an IANA time zone"),
        # A folder of the zone database, and a name too long for a file: located errors, not a crash.
        (("timezone: America/Los_Angeles", "timezone: Etc"), ":5: timezone: 'Etc' is not an IANA time zone"),
        (("timezone: America/Los_Angeles", "timezone: " + "A" * 300), ":5: timezone: '" + "A" * 300 + "' is not an IANA time zone"),
        (('start: "21:00"', 'start: "25:00"'), ":9: quiet_hours.start: '25:00' is not a time of day"),
        (("{mode: opt_out}", "{mode: sometimes}"), ":7: classes.marketing.mode:"),
        (("regime: opt_out", "regime: maybe"), ":3: regime:"),
        (("name: Acme Motors", "name: Acme Motors\ncolour: red"), ":3: colour: unknown field"),
        (("country: US", "country: XX"), ":4: country: 'XX' is not an ISO 3166 country code"),
    ],
)
def test_bad_tenant_files_name_line_and_field(tmp_path, change, expected):
    messages = errors_of(load_tenant_file, write(tmp_path, TENANT.replace(*change), "tenant.yaml"))
    assert any(expected in m for m in messages), messages
