"""Plain-language revocation: the corpus of replies (tests/api/revocation_corpus.py), each
with the class the product gives it, the precision and recall of "is a revocation" against
what the customer meant, and one revocation end to end through the signed Twilio webhook."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from engine.api.keywords import RULES, Keyword, classify, matching_rule, normalize
from engine.send.individual import NotSent, send_individual
from tests.api.conftest import CLOCK, Api, inbound_sms
from tests.api.revocation_corpus import (
    CORPUS,
    HONOURED_THOUGH_NOT_MEANT,
    MISSED,
    meant_as_revocation,
)

# The figures docs/api.md reports ("Plain-language revocation"); a change of rules or corpus
# that moves them must update both.
CORPUS_SIZE = 256
PRECISION = 149 / 156  # 95.5 %: 7 replies honoured on the safe side that were not meant
RECALL = 149 / 152  # 98.0 %: 3 revocations no rule reads


@pytest.mark.parametrize(("body", "expected"), CORPUS)
def test_each_reply_gets_its_class(body: str, expected: Keyword) -> None:
    assert classify(body) is expected


def test_the_corpus_is_distinct_and_its_labels_refer_to_it() -> None:
    texts = [text for text, _expected in CORPUS]
    assert len(texts) == len(set(texts)) == CORPUS_SIZE
    assert HONOURED_THOUGH_NOT_MEANT <= set(texts)
    assert all(expected is Keyword.NONE for _text, expected in MISSED)


def test_precision_and_recall_of_is_a_revocation() -> None:
    true_positives = false_positives = false_negatives = 0
    for body, expected in CORPUS:
        revoked = classify(body) is Keyword.OPT_OUT
        meant = meant_as_revocation(body, expected)
        true_positives += revoked and meant
        false_positives += revoked and not meant
        false_negatives += meant and not revoked
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    print(f"corpus {len(CORPUS)}: precision {precision:.1%}, recall {recall:.1%}")
    assert (precision, recall) == (PRECISION, RECALL)


def test_every_rule_decides_some_reply_of_the_corpus() -> None:
    # A row no reply exercises is untested: each revocation row must be the first to match
    # at least one reply, and each idiom must turn at least one per-se word into nothing.
    deciding = {matching_rule(body) for body, _expected in CORPUS}
    idioms_used = {
        rule for rule in RULES if rule.outcome is Keyword.NONE and any(rule.pattern.search(normalize(b)) for b, _ in CORPUS)
    }
    for rule in RULES:
        assert rule in (deciding if rule.outcome is Keyword.OPT_OUT else idioms_used), rule.why


ACME_NUMBER = "+12135550000"
AVA = "+12135550101"  # Acme's C1


INBOUND = "/webhooks/twilio/acme-motors/inbound"


async def test_please_stop_texting_me_blocks_the_number_and_the_next_individual_sms(api: Api) -> None:
    # Ava first says YES (Acme requires SMS opt-in), so a reply to her would go out...
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "YES", sid="SM" + "2" * 32)):
        pass
    explain = "/api/v1/contacts/C1/explain?channel=sms&class=transactional&kind=individual"
    async with api.session.get(api.url(explain), headers=api.auth("acme-motors", "sales")) as response:
        assert (await response.json())["decision"]["decision"] == "send"

    # ...until she asks, in her own words, to stop.
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "please stop texting me")) as response:
        assert response.status == 200
        replies = [m.text for m in ElementTree.fromstring(await response.text()).iter("Message")]
    # One confirmation, no marketing, and how to come back.
    assert replies == [
        "You have been unsubscribed and will receive no more messages from Acme Motors. Reply START to resubscribe."
    ]
    *_yes, event = await api.events("acme-motors")
    assert (event["external_id"], event["action"], event["channel"], event["address"]) == ("C1", "block", "sms", AVA)
    assert (event["method"], event["cause"], event["actor"], event["note"]) == (
        "sms_keyword", "sms_stop", "recipient", "please stop texting me",
    )  # fmt: skip
    # Bravo's B1 shares the number but texted nobody at Bravo: untouched.
    assert await api.events("bravo-cars") == []
    with pytest.raises(NotSent, match="do_not_contact"):
        await send_individual(api.engine, api.settings, "acme-motors", "C1", "sms", "Hi Ava, the SUV is in", None, clock=CLOCK)


async def test_an_ordinary_reply_records_nothing_and_gets_no_answer(api: Api) -> None:
    async with api.twilio_post(INBOUND, inbound_sms(ACME_NUMBER, AVA, "I'll stop by Saturday")) as response:
        assert response.status == 200
        assert list(ElementTree.fromstring(await response.text()).iter("Message")) == []
    assert await api.events() == []


CORPUS_TENANT = """\
tenant: corpus-cars
name: Corpus Cars
country: US
timezone: America/Los_Angeles
quiet_hours: null
"""


async def test_every_reply_of_the_corpus_through_the_signed_webhook_then_an_individual_text(
    api: Api, tmp_path: Path
) -> None:
    """Each reply of the corpus texted in by its own customer, signed as Twilio signs; then a
    salesperson's individual text to each: refused for exactly the replies the table reads
    as revocations, delivered to the provider for every other."""
    from dataclasses import replace

    from campaigns.tenant_file import parse_tenant_text
    from engine.db.tenants import apply_policy
    from engine.imports import import_contacts
    from tests.capture import ThreadedCapture

    numbers = [f"+1213555{1000 + n:04d}" for n in range(len(CORPUS))]
    async with api.engine.begin() as conn:
        await apply_policy(conn, parse_tenant_text(CORPUS_TENANT), CORPUS_TENANT, CLOCK)
    contacts = tmp_path / "corpus-contacts.csv"
    contacts.write_text("external_id,phone\n" + "".join(f"K{n:03d},{number}\n" for n, number in enumerate(numbers)))
    await import_contacts(api.engine, str(contacts), "corpus-cars", workers=0, clock=CLOCK)

    for number, (body, _expected) in zip(numbers, CORPUS, strict=True):
        async with api.twilio_post("/webhooks/twilio/corpus-cars/inbound", inbound_sms(ACME_NUMBER, number, body)) as response:
            assert response.status == 200, (body, await response.text())

    sink = ThreadedCapture(tmp_path / "sink")
    try:
        settings = replace(api.settings, twilio_url=sink.env["CONSENTRY_TWILIO_URL"])
        refused, delivered = [], []
        for n, (body, expected) in enumerate(CORPUS):
            try:
                await send_individual(api.engine, settings, "corpus-cars", f"K{n:03d}", "sms", "Hi, it's Sam from Corpus Cars.", None,
                                      clock=CLOCK)
            except NotSent as exc:
                assert "do_not_contact" in str(exc), (body, str(exc))
                refused.append(body)
            else:
                delivered.append(numbers[n])
            assert (body in refused) == (expected is Keyword.OPT_OUT), body
        texts = sink.call(sink.sms.wait_for(len(delivered), timeout=30))
    finally:
        sink.close()
    assert sorted(text["to"] for text in texts) == sorted(delivered)
    assert len(refused) == sum(1 for _body, expected in CORPUS if expected is Keyword.OPT_OUT) == 156
