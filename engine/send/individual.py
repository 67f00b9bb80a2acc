"""`send individual`: a salesperson's one-to-one reply.

Gated as an *individual* message: it reaches a customer who opted out of bulk marketing
(rules 5-12 do not apply) but never an address that is blocked (a STOP, an unsubscribe from
everything, a hard bounce) nor a lead still waiting to say YES to texts. The body is the
salesperson's own words: it is inserted as data, never evaluated as a template.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clock import Clock
from engine.config import Settings
from engine.db import deliveries as ledger
from engine.db.batches import load_one
from engine.db.states import DeliveryState, Kind
from engine.db.tenants import load_tenant
from engine.errors import ConsentryError, InputError, NotFoundError
from engine.imports.ledger import record_events
from engine.render import EmailSkeleton, SmsRenderer, compile_template, recipient_context
from engine.render.context import STANDARD_VARIABLES
from engine.send.campaign_inputs import reason_code
from engine.send.dkim import key_for, load_signer
from engine.send.identities import envelope_sender, individual_identity
from engine.transports.errors import PermanentError, TransientError
from engine.webhooks.outbox import enqueue_delivery_failed
from gating import BatchEvaluator, ClassMode, Message, TenantPolicy, compile_policy

_BODY_VARIABLES = STANDARD_VARIABLES | {"body", "subject"}


class NotSent(ConsentryError):
    """The reply was held back by a rule that binds individual messages too; `reason` is the
    gating reason code (`do_not_contact`, `awaiting_sms_opt_in`, ...)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IndividualResult:
    external_id: str
    channel: str
    address: str
    provider_id: str
    segments: int | None


def default_class(policy: TenantPolicy) -> str:
    """A reply is not marketing: the first exempt class, else the first class."""
    for code, mode in policy.classes.items():
        if mode is ClassMode.EXEMPT:
            return code
    return next(iter(policy.classes))


async def send_individual(
    engine: AsyncEngine,
    settings: Settings,
    tenant_code: str,
    external_id: str,
    channel: str,
    body: str,
    subject: str | None,
    sender: str | None = None,
    class_code: str | None = None,
    *,
    clock: Clock,
) -> IndividualResult:
    if not body.strip():
        raise InputError("the message body is empty", field="--body")
    if channel == "email" and not (subject and subject.strip()):
        raise InputError("an email needs a subject", field="--subject")
    from engine.send.runner import check_transport

    check_transport(channel, settings)  # a missing CA file: refused before a row is written
    async with engine.connect() as conn:
        tenant = await load_tenant(conn, tenant_code)
    identity = individual_identity(tenant.settings.senders, tenant.code, tenant.name, channel, sender, settings.sms_from)
    signer = None
    if channel == "email" and identity.email is not None:
        try:  # signed like a campaign from that domain; refused before a row is written
            key = key_for(tenant.settings.dkim, identity.email)
            signer = None if key is None else load_signer(key)
        except ConsentryError as exc:
            raise InputError(str(exc), field="--from") from None
    class_code = class_code or default_class(tenant.policy)
    if class_code not in tenant.policy.classes:
        raise InputError(f"class {class_code!r} is not in tenant {tenant_code!r}'s policy", field="--class")
    message = Message(kind=Kind.INDIVIDUAL, channel=channel, class_code=class_code, party="first")
    policy = compile_policy(tenant.policy, message)
    now = clock()
    batch = await load_one(engine, tenant.id, channel, external_id, now)
    if batch is None:
        raise NotFoundError(f"contact {external_id!r} not found in tenant {tenant_code!r}")
    row = batch.contacts[0]
    decision = BatchEvaluator(policy, message).evaluate(batch.contacts, batch.ledger, {}, now)[0]
    address = row[5]
    base = {
        "tenant_id": tenant.id, "campaign_id": None, "contact_id": row[0], "channel": channel, "kind": Kind.INDIVIDUAL,
        "purpose": "campaign", "address": address, "decision": decision.decision, "reason": reason_code(decision) or None,
        "attempts": 0, "created_at_us": now, "updated_at_us": now,
    }
    if decision.decision != "send":
        async with engine.begin() as conn:
            await ledger.insert_new(conn, [{**base, "state": DeliveryState.SUPPRESSED}])
        reason = reason_code(decision)
        raise NotSent(f"not sent to {external_id} on {channel}: {reason} (see `consentry explain`)", reason)

    async with engine.begin() as conn:
        first_touch = channel == "sms" and address not in await ledger.addresses_with(conn, tenant.id, "sms", [address])
        delivery_id = (await ledger.insert_new(conn, [{**base, "state": DeliveryState.PENDING}]))[row[0]]
    context = recipient_context({"body": body, "subject": subject or ""}, external_id=external_id, tenant_name=tenant.name)
    from engine.send.runner import open_channel_transport

    transport, closer = await open_channel_transport(channel, settings, 1)
    try:
        async with engine.begin() as conn:
            await ledger.mark_sending(conn, [delivery_id], clock())
        # The outcome follows the error's class, never its text: transient stays pending.
        provider_id, segments, error, cause, state = None, None, None, None, DeliveryState.SENT
        try:
            if channel == "email":
                assert identity.email is not None and identity.return_path is not None
                skeleton = EmailSkeleton(
                    sender_email=identity.email, sender_name=identity.name,
                    subject=compile_template("{{ subject }}", origin="--subject", variables=_BODY_VARIABLES),
                    text=compile_template("{{ body }}", origin="--body", variables=_BODY_VARIABLES), bulk=False,
                    reply_to=identity.reply_to, reply_to_name=identity.reply_to_name, dkim=signer,
                )
                domain = identity.email.rpartition("@")[2]
                provider_id = f"<i{delivery_id}.{now}@{domain}>"
                # VERP like a campaign's: a later bounce of the reply names its delivery.
                mail_from = envelope_sender(identity.return_path, settings.secret.encode(), tenant.id, delivery_id)
                await transport.send_raw(mail_from, [address], skeleton.render(address, None, context, provider_id, clock()))
            else:
                renderer = SmsRenderer(
                    compile_template("{{ body }}", origin="--body", variables=_BODY_VARIABLES),
                    opt_out_footer=tenant.policy.sms.opt_out_footer,
                )
                text = renderer.render(context, first_touch=first_touch)
                from_number = identity.phone or settings.sms_from
                provider_id, segments = await transport.send(address, from_number, text.text)
                segments = segments or text.segments
        except PermanentError as exc:
            # A fault of the relay (certificate, credentials, sender) reads in plain words.
            error = str(exc) if exc.stop_cause else f"{exc.code}: {exc.message}"
            cause, state = exc.block_cause, DeliveryState.FAILED
        except TransientError as exc:
            error, state = f"transient: {exc}", DeliveryState.PENDING
        stamp = clock()
        async with engine.begin() as conn:
            await ledger.update_rows(conn, [{
                "_id": delivery_id, "state": state, "provider_id": provider_id, "segments": segments, "error": error,
                "sent_at_us": stamp if state == DeliveryState.SENT else None, "updated_at_us": stamp,
            }])
            if cause:
                await record_events(conn, tenant.id, [ledger.block_event(row[0], channel, address, cause, error or "", stamp)],
                                    recorded_at_us=stamp)
            if state == DeliveryState.FAILED:
                await enqueue_delivery_failed(conn, tenant.id, [delivery_id], stamp)
        if error is not None:
            raise ConsentryError(f"not sent to {external_id} on {channel}: {error}")
    finally:
        await closer()
    return IndividualResult(external_id, channel, address, provider_id or "", segments)
