"""TenantPolicy.from_mapping, Message and compile_policy."""

from __future__ import annotations

import pytest
from gating_cases import DAY, HOUR, bulk, individual, tenant

from gating import (
    ClassMode,
    Message,
    PolicyError,
    Reason,
    TenantPolicy,
    UnknownClassError,
    compile_policy,
)


def test_minimal_mapping_takes_formats_defaults():
    policy = TenantPolicy.from_mapping({"tenant": "acme", "name": "Acme"})
    assert policy.regime is ClassMode.OPT_OUT
    assert policy.timezone == "UTC"
    assert dict(policy.classes) == {"marketing": "opt_out", "service": "opt_out", "survey": "opt_out", "transactional": "exempt"}
    assert policy.sms.opt_in_required is False and policy.sms.opt_in_excluded_sources == ()
    assert policy.sms.opt_out_footer == "Reply STOP to opt out of texts from this number."
    assert "Reply STOP to cancel." in policy.sms.opt_in_message
    assert (policy.review_period_days, policy.review_enforced) == (183, False)
    assert policy.quiet_hours is None and policy.frequency_caps == () and dict(policy.reauthorization_days) == {}


def test_class_given_as_empty_follows_the_regime_and_explicit_mode_overrides():
    policy = TenantPolicy.from_mapping(tenant(regime="opt_in", classes={"a": {}, "b": None, "c": {"mode": "opt_out"}, "d": {"mode": "exempt"}}))
    assert dict(policy.classes) == {"a": "opt_in", "b": "opt_in", "c": "opt_out", "d": "exempt"}


def test_full_mapping_round_trip():
    policy = TenantPolicy.from_mapping(tenant(
        quiet_hours={"start": "21:30", "end": "07:45"},
        frequency_caps=[{"channel": "sms", "max": 3, "per_hours": 24}],
        reauthorization_days={"sms": 365},
        sms={"opt_in_required": True, "opt_in_excluded_sources": ["Fullpath", "AutoTrader"]},
    ))
    assert (policy.quiet_hours.start, policy.quiet_hours.end) == (21 * 60 + 30, 7 * 60 + 45)
    assert str(policy.quiet_hours) == "21:30-07:45"
    compiled = compile_policy(policy, bulk("sms", "newsletter"))
    assert compiled.mode is ClassMode.OPT_IN and compiled.requires_grant and not compiled.is_exempt
    assert compiled.reauthorization_us == 365 * DAY
    assert (compiled.cap.max, compiled.cap.window_us) == (3, 24 * HOUR)
    assert compiled.excluded_sources == frozenset({"fullpath", "autotrader"})
    assert compiled.sms_opt_in_required and compiled.zone.key == "America/New_York"
    assert compiled.review_period_us == 183 * DAY
    email = compile_policy(policy, bulk("email", "transactional"))
    assert email.cap is None and email.reauthorization_us is None and email.is_exempt


@pytest.mark.parametrize(("overrides", "field"), [
    ({"tenant": "Acme Motors"}, "tenant"),
    ({"tenant": None}, "tenant"),
    ({"regime": "exempt"}, "regime"),
    ({"timezone": "Mars/Base"}, "timezone"),
    ({"classes": {}}, "classes"),
    ({"classes": {"marketing": {"mode": "maybe"}}}, "classes.marketing.mode"),
    ({"classes": {"*": {}}}, "classes"),
    ({"classes": {"marketing": "opt_in"}}, "classes.marketing"),
    ({"sms": {"opt_in_required": "yes"}}, "sms.opt_in_required"),
    ({"sms": {"opt_in_excluded_sources": "Fullpath"}}, "sms.opt_in_excluded_sources"),
    ({"reauthorization_days": {"fax": 30}}, "reauthorization_days"),
    ({"reauthorization_days": {"sms": 0}}, "reauthorization_days.sms"),
    ({"review": {"period_days": -1}}, "review.period_days"),
    ({"review": {"enforce": 1}}, "review.enforce"),
    ({"quiet_hours": {"start": "9pm", "end": "08:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "21:00", "end": "24:00"}}, "quiet_hours.end"),
    ({"quiet_hours": "21:00-08:00"}, "quiet_hours"),
    ({"frequency_caps": [{"channel": "sms", "max": 0, "per_hours": 24}]}, "frequency_caps[0].max"),
    ({"frequency_caps": [{"channel": "sms", "max": 1, "per_hours": 1}, {"channel": "sms", "max": 2, "per_hours": 2}]},
     "frequency_caps[1].channel"),
    ({"frequency_caps": [{"channel": "pigeon", "max": 1, "per_hours": 1}]}, "frequency_caps[0].channel"),
])
def test_nonsense_is_a_policy_error_naming_the_key(overrides, field):
    with pytest.raises(PolicyError) as caught:
        TenantPolicy.from_mapping(tenant(**overrides))
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"{field}: ")


def test_not_a_mapping():
    with pytest.raises(PolicyError):
        TenantPolicy.from_mapping(["tenant"])


def test_unknown_class_when_compiling():
    with pytest.raises(UnknownClassError) as caught:
        compile_policy(TenantPolicy.from_mapping(tenant()), bulk("email", "gossip"))
    assert caught.value.class_code == "gossip" and isinstance(caught.value, PolicyError)


@pytest.mark.parametrize("fields", [
    {"kind": "broadcast"}, {"channel": "fax"}, {"party": "*"}, {"class_code": "*"}, {"class_code": ""},
    {"is_opt_in_request": "yes"},
])
def test_message_validation(fields):
    base = {"kind": "bulk", "channel": "email", "class_code": "marketing"}
    with pytest.raises(PolicyError):
        Message(**{**base, **fields})


def test_live_rules_follow_the_table():
    policy = TenantPolicy.from_mapping(tenant(quiet_hours={"start": "21:00", "end": "08:00"}, sms={"opt_in_required": True}))
    compiled = compile_policy(policy, bulk("sms"))
    live = {reason for reason in Reason if compiled.live & reason.bit}
    assert live == set(Reason) - {Reason.NO_CONSENT, Reason.CONSENT_EXPIRED, Reason.REVIEW_OVERDUE, Reason.FREQUENCY_CAPPED}
    reply = {reason for reason in Reason if compiled.live_for(individual("sms")) & reason.bit}
    assert reply == {Reason.NO_ADDRESS, Reason.INVALID_ADDRESS, Reason.DO_NOT_CONTACT, Reason.AWAITING_SMS_OPT_IN}
    request = compiled.live_for(individual("sms", is_opt_in_request=True))
    assert not request & Reason.AWAITING_SMS_OPT_IN.bit


def test_a_state_is_only_valid_for_its_target():
    compiled = compile_policy(TenantPolicy.from_mapping(tenant()), bulk("email"))
    with pytest.raises(PolicyError):
        compiled.live_for(bulk("sms"))
    with pytest.raises(PolicyError):
        compiled.live_for(bulk("email", "service"))


def test_compiled_policy_is_immutable():
    compiled = compile_policy(TenantPolicy.from_mapping(tenant()), bulk())
    with pytest.raises(AttributeError):
        compiled.live = 0
    with pytest.raises(TypeError):
        compiled.event_effects[("grant", "email", "marketing", "first")] = 0
