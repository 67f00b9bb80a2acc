"""The database schema (SQLAlchemy 2 declarative, typed).

Conventions (docs/database.md explains them):
- every row carries `tenant_id` and every unique key starts with it: tenants never meet;
- instants are BIGINT microseconds since the epoch, UTC (`*_us`): exact, identical ordering
  on SQLite and PostgreSQL, and nothing to parse on the hot path;
- the consent ledger (`consent_events`) is append-only: no code path updates or deletes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    if TYPE_CHECKING:
        # DeclarativeBase types this FromClause (it may map a join); every model here is
        # declared with __tablename__, so it is a Table (insert/update need one).
        __table__: ClassVar[Table]


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class TenantPolicyVersion(Base):
    """Every applied tenant.yaml, kept: a campaign snapshots the version it used."""

    __tablename__ = "tenant_policies"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    version: Mapped[int] = mapped_column(Integer)
    policy_json: Mapped[str] = mapped_column(Text)
    source_yaml: Mapped[str] = mapped_column(Text)
    applied_at_us: Mapped[int] = mapped_column(BigInteger)
    # Who applied it: the API key's name, or `cli` for `consentry tenant apply` (seed 001's
    # settings page shows who changed the tenant's opt-in/opt-out settings, and when).
    applied_by: Mapped[str | None] = mapped_column(String(200))


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        # Audience expansion walks (tenant_id, id) in keyset order: one range seek a page.
        # Unique (id alone is) so that contact_points can refer to a contact by (tenant_id,
        # id): a point cannot name another tenant's contact, and one foreign-key check a
        # point does what two did (migration 0014). No index on lead_source: audiences
        # match it case-insensitively, which an index on the raw column cannot serve, and
        # each index costs every imported contact an insert (migration 0015).
        Index(None, "tenant_id", "id", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(100))
    lead_source: Mapped[str | None] = mapped_column(String(200))
    # A projection of the latest opt_out/opt_in event, for display and for "already opted
    # out?" on re-import. Gating reads the ledger itself, so `--at` sees history.
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_changed_at_us: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at_us: Mapped[int | None] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)


class ContactPoint(Base):
    """The current address of a contact of one kind: `email` or `phone` (E.164)."""

    __tablename__ = "contact_points"
    __table_args__ = (
        UniqueConstraint("tenant_id", "contact_id", "kind"),
        # Who has this address? (duplicate addresses, STOP webhooks, bounces)
        Index(None, "tenant_id", "kind", "address"),
        # The point's contact, in the point's tenant. The tenant exists through the contact's
        # own foreign key, so this one check enforces what the two single-column keys did
        # (tenant exists, contact exists) and more (they are the same tenant), at one index
        # probe a point instead of two: a bulk import writes ~1.9 points a contact
        # (docs/benchmarks.md, "Fourth pass").
        ForeignKeyConstraint(["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"]),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)
    contact_id: Mapped[int] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(320))
    is_valid: Mapped[bool] = mapped_column(Boolean)
    # Time zones of a phone number (phonenumbers' data), space-separated; quiet hours use
    # them when the contact has no timezone of its own.
    zones: Mapped[str | None] = mapped_column(String(200))
    updated_at_us: Mapped[int] = mapped_column(BigInteger)


class ConsentEvent(Base):
    """The append-only consent ledger. Current state is a projection of it."""

    __tablename__ = "consent_events"
    __table_args__ = (
        # Gating loads a batch's ledger with one range/IN query on this index, rows already
        # in the order the projection needs.
        Index(None, "tenant_id", "contact_id", "occurred_at_us", "id"),
        Index(None, "tenant_id", "address"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    action: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    class_code: Mapped[str | None] = mapped_column(String(64))
    party: Mapped[str | None] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(320))
    method: Mapped[str] = mapped_column(String(64))
    occurred_at_us: Mapped[int] = mapped_column(BigInteger)
    recorded_at_us: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(200))
    basis: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    # Set on suppressions the system records itself: hard_bounce, spam_complaint,
    # carrier_unsubscribed, invalid_number, sms_keyword...
    cause: Mapped[str | None] = mapped_column(String(64))
    # What the person was shown when they chose (GDPR Art. 7(1): consent must be
    # demonstrable): the wording's id and version, the text itself in consent_wordings.
    wording_id: Mapped[str | None] = mapped_column(String(64))
    wording_version: Mapped[str | None] = mapped_column(String(32))
    # Set on a carbon copy (engine/imports/links.py): the external_id of the linked contact
    # the original event was recorded on. A copy is never copied again.
    linked_from: Mapped[str | None] = mapped_column(String(200))


class ContactLink(Base):
    """Two contacts of one tenant linked (a household, a service location and its billing
    account): a consent change recorded on one is copied onto the other (docs/imports.md,
    "Linked contacts"). Stored once per pair, the smaller contact id first."""

    __tablename__ = "contact_links"
    __table_args__ = (
        UniqueConstraint("tenant_id", "contact_a", "contact_b"),
        # The ledger finds a batch's links from either side: one index per side.
        Index(None, "tenant_id", "contact_b"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    contact_a: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    contact_b: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    # household | billing | service_location | other (engine.imports.links.LinkKind)
    kind: Mapped[str] = mapped_column(String(32))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(200))


class ConsentWording(Base):
    """Each version of a wording a person was shown when giving or changing consent.

    The version is a digest of the text, so the same words always get the same version and
    a changed word gets a new one: nobody has to remember to bump a number.
    """

    __tablename__ = "consent_wordings"
    __table_args__ = (UniqueConstraint("tenant_id", "wording_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    wording_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    first_shown_at_us: Mapped[int] = mapped_column(BigInteger)


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    code: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    class_code: Mapped[str] = mapped_column(String(64))
    party: Mapped[str] = mapped_column(String(8))
    definition_json: Mapped[str] = mapped_column(Text)
    templates_json: Mapped[str] = mapped_column(Text)
    policy_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    # The last fencing token handed to a runner of this campaign (engine/send/claims.py):
    # every runner draws a new, larger one, so a late write by an older runner is told apart.
    claim_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)
    finished_at_us: Mapped[int | None] = mapped_column(BigInteger)


class Delivery(Base):
    """One row per (campaign, contact, channel): the idempotency ledger and the send log.

    Written `pending` before the transport is called; a unique key makes a second writer
    fail instead of sending twice. Individual messages have no campaign (NULL never
    collides), and are rows here too so frequency caps and exports see every send.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "campaign_id", "contact_id", "channel"),
        # A campaign's counts per state, decision and reason from the index alone (status,
        # the desk's campaign page); its prefix serves every lookup by state (0011).
        # (Named: the convention's name would pass PostgreSQL's 63 characters.)
        Index("ix_deliveries_campaign_counts", "tenant_id", "campaign_id", "state", "purpose", "decision", "reason"),
        # The desk's recipients of one reason, a page at a time in audience order (0011).
        Index(None, "tenant_id", "campaign_id", "reason", "contact_id"),
        # Few rows have feedback or an error: partial indexes hold only those (0011).
        Index(None, "tenant_id", "campaign_id", "feedback", sqlite_where=text("feedback IS NOT NULL"),
              postgresql_where=text("feedback IS NOT NULL")),
        Index("ix_deliveries_tenant_id_campaign_id_state_errors", "tenant_id", "campaign_id", "state",
              sqlite_where=text("error IS NOT NULL"), postgresql_where=text("error IS NOT NULL")),
        # Frequency caps: bulk sends of a contact on a channel since an instant.
        Index(None, "tenant_id", "contact_id", "channel", "sent_at_us"),
        Index(None, "tenant_id", "channel", "address"),
        # Status callbacks find their delivery by MessageSid (migration 0010).
        Index(None, "provider_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    # `campaign` (the campaign's message) or `opt_in_request` (the SMS opt-in request sent
    # in its place to a lead who has not yet said YES, when the tenant requires it).
    purpose: Mapped[str] = mapped_column(String(16), default="campaign")
    address: Mapped[str | None] = mapped_column(String(320))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    defer_until_us: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    segments: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    sent_at_us: Mapped[int | None] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)
    # State `sending` belongs to the runner whose fencing token this is, until
    # `claim_until_us` (renewed while it works); past that the row is in doubt and may be
    # reclaimed by another runner (engine/send/claims.py).
    claim_token: Mapped[int | None] = mapped_column(BigInteger)
    claim_until_us: Mapped[int | None] = mapped_column(BigInteger)
    # When the first claim was taken (real time): the earliest an attempt can have reached
    # the provider, where reconciliation of an in-doubt text starts looking.
    first_claimed_at_us: Mapped[int | None] = mapped_column(BigInteger)
    # What mail that came back later said about the message (engine/inbound): the last of
    # `hard_bounce`, `complaint` (both also blocks in the ledger) or `soft_bounce`, when,
    # and how many delayed / temporary-failure reports arrived.
    feedback: Mapped[str | None] = mapped_column(String(16))
    feedback_at_us: Mapped[int | None] = mapped_column(BigInteger)
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class InboundMessage(Base):
    """An inbound text already acted on, by its MessageSid: a replayed (or retried) webhook
    carrying the same MessageSid records nothing again, so a replayed YES cannot undo a
    later STOP."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("tenant_id", "message_sid"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    message_sid: Mapped[str] = mapped_column(String(64))
    received_at_us: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    revoked_at_us: Mapped[int | None] = mapped_column(BigInteger)


class WebhookEndpoint(Base):
    """A URL a tenant wants consent and campaign events POSTed to (engine/webhooks/).

    The signing secret is kept as given (`whsec_...`): the dispatcher needs it to sign, so
    unlike an API key it cannot be stored as a digest. Deleting an endpoint stamps
    `deleted_at_us` (its delivery history stays readable) and cancels what it had pending.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index(None, "tenant_id", "deleted_at_us"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(String(2000))
    # The event types it receives, space-separated, sorted (engine.webhooks.events.EventType).
    event_types: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(100))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    deleted_at_us: Mapped[int | None] = mapped_column(BigInteger)


class WebhookMessage(Base):
    """The outbox: one row per (endpoint, event), written in the transaction that records
    the event, so an event is never lost with the process that recorded it.

    The body is stored as sent, byte for byte, so every retry carries the same payload.
    A row is POSTed only by the dispatcher whose claim token it carries, until
    `claim_until_us` (engine/webhooks/outbox.py).
    """

    __tablename__ = "webhook_messages"
    __table_args__ = (
        # An event reaches an endpoint through one row, whoever enqueues it (two runners
        # settling one campaign, a concurrent writer's events seen by ours).
        UniqueConstraint("tenant_id", "endpoint_id", "event_id"),
        # The dispatcher's scan: due pending rows, oldest due first.
        Index(None, "state", "next_attempt_at_us"),
        # An endpoint's deliveries, newest first (GET /api/v1/webhooks/{id}/deliveries).
        Index(None, "tenant_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    # pending | delivered | failed (gave up) | cancelled (endpoint deleted)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at_us: Mapped[int] = mapped_column(BigInteger)
    claim_token: Mapped[int | None] = mapped_column(BigInteger)
    claim_until_us: Mapped[int | None] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    last_attempt_at_us: Mapped[int | None] = mapped_column(BigInteger)
    # The receiver's HTTP status of the last attempt; NULL when it never answered.
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at_us: Mapped[int | None] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """A POST that creates, remembered by its `Idempotency-Key` header (engine/api/idempotency.py):
    a repeat with the same request gets the stored response instead of writing again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(200))
    # SHA-256 of method, path and body: the same key with another request is an error.
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class DeskUser(Base):
    """A person who signs in to the desk (engine/desk/) with a name and a password, with one
    role of one tenant, like an API key. Only a scrypt digest of the password is kept."""

    __tablename__ = "desk_users"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    username: Mapped[str] = mapped_column(String(200))
    # "scrypt$n$r$p$salt$digest" (engine/desk/passwords.py).
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    disabled_at_us: Mapped[int | None] = mapped_column(BigInteger)


class DeskSession(Base):
    """A signed-in browser (engine/desk/sessions.py). The cookie carries a random id; the
    row keeps its SHA-256, so a leaked table opens no session. A session is either a desk
    user's or an API key's (exactly one of the two ids), and ends at `expires_at_us` or
    when signed out; a disabled user or a revoked key ends it at once."""

    __tablename__ = "desk_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("desk_users.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    # Compared with every form's hidden field (synchronizer token).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    expires_at_us: Mapped[int] = mapped_column(BigInteger)
    ended_at_us: Mapped[int | None] = mapped_column(BigInteger)
