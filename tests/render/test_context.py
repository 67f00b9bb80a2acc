"""Per-recipient template context."""

from __future__ import annotations

import pytest

from engine.render import STANDARD_VARIABLES, CampaignContext, recipient_context, verify_token
from tests.render.conftest import PUBLIC_URL, SECRET


def test_standard_names_default_to_empty() -> None:
    context = recipient_context(first_name="Ann", last_name=None)
    assert set(context) == STANDARD_VARIABLES
    assert context["first_name"] == "Ann" and context["last_name"] == ""


def test_extra_names_are_added_but_cannot_replace_standard_ones() -> None:
    assert recipient_context({"vehicle": "Civic"})["vehicle"] == "Civic"
    with pytest.raises(ValueError):
        recipient_context({"unsubscribe_url": "https://evil.example"})
    with pytest.raises(ValueError):
        recipient_context(vehicle="Civic")


def test_campaign_context_signs_each_recipient(campaign_context: CampaignContext) -> None:
    context = campaign_context.for_recipient(
        42, external_id="C42", first_name="Ann", email="ann@example.com",
        extra={"vehicle": "Civic"},
    )
    token = context["unsubscribe_token"]
    assert context["unsubscribe_url"] == f"{PUBLIC_URL}/u/{token}"
    assert context["preferences_url"] == f"{PUBLIC_URL}/p/{token}"
    claims = verify_token(SECRET, str(token))
    assert claims is not None
    assert (claims.tenant_id, claims.campaign_id, claims.contact_id, claims.channel) == (
        3, 11, 42, "email"
    )
    assert context["tenant_name"] == "Acme Motors" and context["agent_name"] == "Sam"
    assert context["phone"] == "" and context["vehicle"] == "Civic"
