"""Who a message is from: the one resolution of sender identities (docs/sending.md).

Bulk email: From is the campaign's `sender.email`, else the tenant's `senders.bulk`;
Reply-To is `senders.reply_to`; the envelope sender (MAIL FROM) is the return path with a
per-delivery token (`bounces+<token>@domain`, engine/render/return_path.py); the
List-Unsubscribe mailto is `senders.unsubscribe`. A tenant without `senders` keeps what it
had: the campaign's sender, and `bounces@` / `unsubscribe@` the sender's domain.

Individual replies (`send individual --from PERSON`): the person's address is From and
Reply-To (their name, their number for texts). Without `--from`, the tenant's bulk
identity (Reply-To: `senders.reply_to`) — never a made-up address when `senders` exist.

Every caller (the campaign pipeline, `send individual`, any API that sends) resolves here;
this module is the one place that turns the tenant's `senders` (TenantRecord.settings) into
addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.senders import Senders, sender_problem
from engine.errors import InputError
from engine.render import sign_return_path, tagged_address

__all__ = [
    "BulkIdentity",
    "IndividualIdentity",
    "bulk_identity",
    "envelope_sender",
    "individual_identity",
]


@dataclass(frozen=True, slots=True)
class BulkIdentity:
    email: str
    name: str
    reply_to: str | None
    return_path: str  # the base address; each message's MAIL FROM adds +<token>
    unsubscribe: str  # the List-Unsubscribe mailto address


@dataclass(frozen=True, slots=True)
class IndividualIdentity:
    email: str | None  # From (email replies)
    name: str | None
    reply_to: str | None
    reply_to_name: str | None
    phone: str | None  # the number a text goes from
    return_path: str | None


def bulk_identity(senders: Senders | None, sender_email: str | None, sender_name: str | None, tenant_name: str) -> BulkIdentity:
    """From, Reply-To, return path and unsubscribe address of a bulk email campaign.

    The campaign was validated against the policy at launch (`validate_against_policy`),
    so a missing sender here is a policy changed under a launched campaign: an InputError.
    """
    problem = sender_problem(sender_email, senders)
    if problem is not None:
        raise InputError(problem, field="sender.email")
    if senders is None:
        assert sender_email is not None  # sender_problem requires it without senders
        domain = sender_email.rpartition("@")[2].lower()
        return BulkIdentity(sender_email, sender_name or tenant_name, None, f"bounces@{domain}", f"unsubscribe@{domain}")
    bulk = senders.bulk
    email = sender_email or (bulk.email if bulk else None)
    assert email is not None  # sender_problem: a sender, or senders.bulk
    name = sender_name or (bulk.name if bulk and email == bulk.email else None) or tenant_name
    return BulkIdentity(email, name, senders.reply_to, senders.inbound_return_path, senders.inbound_unsubscribe)


def individual_identity(
    senders: Senders | None, tenant_code: str, tenant_name: str, channel: str, chosen: str | None, default_sms_from: str
) -> IndividualIdentity:
    """Who a one-to-one reply is from; `chosen` is `--from`: a person of `senders.people`,
    or (as before senders existed) an address or number of the caller's choosing."""
    if senders is None:
        if channel == "email":
            email = chosen or f"noreply@{tenant_code}.consentry.invalid"
            return IndividualIdentity(email, tenant_name, None, None, None, f"bounces@{email.rpartition('@')[2].lower()}")
        return IndividualIdentity(None, None, None, None, chosen or default_sms_from, None)
    if chosen is not None and chosen in senders.people:
        person = senders.people[chosen]
        return IndividualIdentity(
            person.email, person.name or tenant_name, person.email, person.name,
            person.phone or default_sms_from, senders.inbound_return_path,
        )
    if chosen is not None and not (channel == "email" and "@" in chosen and senders.owns(chosen)):
        people = ", ".join(sorted(senders.people)) or "none configured"
        raise InputError(f"{chosen!r} is not one of the tenant's people ({people})", field="--from")
    if channel == "sms":
        return IndividualIdentity(None, None, None, None, default_sms_from, None)
    address = chosen or (senders.bulk.email if senders.bulk else senders.reply_to)
    if address is None:
        raise InputError("the tenant has no senders.bulk or senders.reply_to: name a person", field="--from")
    name = senders.bulk.name if senders.bulk and address == senders.bulk.email else None
    reply_to = senders.reply_to if senders.reply_to != address else None
    return IndividualIdentity(address, name or tenant_name, reply_to, None, None, senders.inbound_return_path)


def envelope_sender(return_path: str, secret: bytes, tenant_id: int, delivery_id: int) -> str:
    """MAIL FROM of one delivery: `bounces+<token>@domain` (VERP)."""
    return tagged_address(return_path, sign_return_path(secret, tenant_id, delivery_id))
