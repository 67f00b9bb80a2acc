"""Consentry's Prometheus instruments, and helpers that record a whole batch at once.

Every metric lives on an ``Instruments`` object bound to one ``CollectorRegistry``. The
process-wide one (``default_instruments()``) uses prometheus-client's global registry, which
also carries the process and Python collectors; tests make their own with
``Instruments.fresh()`` and read values from its ``registry``.

The hot path records per batch, never per recipient: gating 1M recipients tallies decisions
in a plain dict and calls ``record_decisions`` once per batch with the counts, because a
locked ``Counter.inc`` per recipient costs more than the gating itself.

Label policy (docs/operations.md): labels are bounded sets only. Never a contact, address,
external id, message id or campaign id: each distinct value is a time series kept for the
whole retention period. Values outside a label's known set are recorded as ``other``, so a
caller's mistake cannot explode cardinality.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

# The `*_created` sample of every counter and histogram series would double the number of
# series for a timestamp no dashboard or alert uses. (A prometheus-client process setting.)
disable_created_metrics()

__all__ = ["Instruments", "default_instruments", "OTHER", "NONE", "ALL_TENANTS"]

OTHER = "other"  # a value outside the label's known set
NONE = "none"  # no reason (a send)
ALL_TENANTS = "_all"  # tenant label value when per-tenant labels are switched off

# Closed sets, from docs/architecture.md and the public formats.
DECISIONS = frozenset({"send", "suppress", "defer"})
KINDS = frozenset({"bulk", "individual"})
CHANNELS = frozenset({"email", "sms", "voice", "letter", "social"})
# An opt-in request is an outcome of its own: the campaign message itself was not sent.
DELIVERY_STATES = frozenset({"sent", "opt_in_request", "failed"})
ERROR_CLASSES = frozenset({"transient", "permanent"})
LEDGER_ACTIONS = frozenset({"grant", "revoke", "block", "unblock", "opt_out", "opt_in", "review"})
# What the inbound mail listener made of a message (docs/inbound-mail.md): `unmatched` was
# accepted and recorded nothing (no valid token, no known sender, not a report), `duplicate`
# repeated a report already recorded, `refused` was an unknown recipient (550).
INBOUND_KINDS = frozenset({"unsubscribe", "hard_bounce", "soft_bounce", "complaint", "unmatched", "duplicate", "refused"})
# One outbound webhook POST: delivered (2xx), retry (failed, another attempt scheduled),
# failed (failed, and it was the last attempt).
WEBHOOK_OUTCOMES = frozenset({"delivered", "retry", "failed"})
# Open but code-like sets (reason codes, import outcomes): a short identifier or ``other``.
_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_TENANT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

# Seconds. Gating a 1,000-recipient batch is a few milliseconds of integer work; loading it
# is one or two indexed queries; rendering is microseconds per message.
_BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
# Rendering one message from precompiled templates: tens to hundreds of microseconds; a
# slow template (a large loop, a huge body) shows in the upper buckets.
_RENDER_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# One SMTP transaction or Twilio API call: tens of ms on a LAN relay, up to seconds on the
# public internet; above 30 s the transport's own timeout has fired.
_DISPATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Keys are label values: strings or str-valued enums (gating's reason codes).
Counts = Mapping[Any, int]


def _text(value: object) -> str:
    if isinstance(value, Enum):
        value = value.value
    return "" if value is None else str(value)


def _closed(value: object, allowed: frozenset[str]) -> str:
    text = _text(value)
    return text if text in allowed else OTHER


def _code(value: object) -> str:
    text = _text(value)
    if not text:
        return NONE
    return text if _CODE.fullmatch(text) else OTHER


class Instruments:
    """All Consentry metrics on one registry, with per-batch recording helpers."""

    def __init__(self, registry: CollectorRegistry, *, per_tenant: bool = True) -> None:
        self.registry = registry
        # With thousands of tenants, per-tenant series may cost more than they tell: False
        # records every tenant as "_all" (docs/operations.md, "Label cardinality").
        self.per_tenant = per_tenant

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self.decisions = counter(
            "consentry_decisions", "Gating decisions, by decision and reason code.",
            ("tenant", "channel", "kind", "decision", "reason"),
        )  # fmt: skip
        self.deliveries = counter(
            "consentry_deliveries", "Messages whose dispatch finished, by final state.",
            ("tenant", "channel", "state"),
        )  # fmt: skip
        self.transport_errors = counter(
            "consentry_transport_errors", "Failed transport attempts, by error class.",
            ("channel", "error"),
        )  # fmt: skip
        self.import_rows = counter(
            "consentry_import_rows", "Rows of contact and consent imports, by outcome.",
            ("tenant", "kind", "outcome"),
        )  # fmt: skip
        self.ledger_events = counter(
            "consentry_ledger_events", "Consent ledger events recorded, by action.",
            ("tenant", "action"),
        )  # fmt: skip
        self.inbound_mail = counter(
            "consentry_inbound_mail", "Mail received by the inbound listener, by what it was.",
            ("tenant", "kind"),
        )  # fmt: skip
        self.webhook_attempts = counter(
            "consentry_webhook_attempts", "Outbound webhook POST attempts, by outcome.",
            ("tenant", "outcome"),
        )  # fmt: skip
        self.gate_batch_seconds = histogram(
            "consentry_gate_batch_seconds", "Time to gate one batch (pure decision, no IO).",
            ("channel",), _BATCH_BUCKETS,
        )  # fmt: skip
        self.batch_load_seconds = histogram(
            "consentry_batch_load_seconds", "Time to load one batch's contacts and ledger.",
            (), _BATCH_BUCKETS,
        )  # fmt: skip
        self.render_seconds = histogram(
            "consentry_render_seconds", "Time to render one message (precompiled templates).",
            ("channel",), _RENDER_BUCKETS,
        )  # fmt: skip
        self.dispatch_seconds = histogram(
            "consentry_dispatch_seconds", "Transport round trip for one message.",
            ("channel",), _DISPATCH_BUCKETS,
        )  # fmt: skip
        self.inflight = Gauge(
            "consentry_inflight", "Transport calls in progress.", ("channel",),
            registry=registry,
        )  # fmt: skip
        self.campaigns_active = Gauge(
            "consentry_campaigns_active",
            "Campaigns with recipients ready to send now (not finished, not only deferred).",
            ("tenant", "channel"), registry=registry,
        )  # fmt: skip
        self._active_seen: set[tuple[str, str]] = set()
        self._dispatch_children: dict[object, tuple[Any, Any]] = {}
        self._delivery_children: dict[tuple[object, object, object], Any] = {}

    @classmethod
    def fresh(cls, *, per_tenant: bool = True) -> Instruments:
        """Instruments on a new, private registry (tests, embedded use)."""
        return cls(CollectorRegistry(), per_tenant=per_tenant)

    def _tenant(self, tenant: object) -> str:
        if not self.per_tenant:
            return ALL_TENANTS
        text = _text(tenant)
        return text if _TENANT.fullmatch(text) else OTHER

    # --- counters, one call per batch -----------------------------------------------

    def record_decisions(
        self, tenant: object, channel: object, kind: object, counts: Mapping[tuple[Any, Any], int]
    ) -> None:
        """Add one batch's decisions: ``counts[(decision, reason)] = n``; reason None for sends."""
        tenant, channel, kind = (
            self._tenant(tenant),
            _closed(channel, CHANNELS),
            _closed(kind, KINDS),
        )
        for (decision, reason), n in counts.items():
            if n:
                self.decisions.labels(
                    tenant, channel, kind, _closed(decision, DECISIONS), _code(reason)
                ).inc(n)

    def record_deliveries(self, tenant: object, channel: object, counts: Counts) -> None:
        """Add final dispatch outcomes: ``counts[state] = n`` with state ``sent``, ``opt_in_request`` or ``failed``."""
        for state, n in counts.items():
            if n:
                # Label children remembered: a sender records every group commit (a few
                # messages each), and `labels()` validates and joins its values every call.
                child = self._delivery_children.get((tenant, channel, state))
                if child is None:
                    child = self._delivery_children[(tenant, channel, state)] = self.deliveries.labels(
                        self._tenant(tenant), _closed(channel, CHANNELS), _closed(state, DELIVERY_STATES))
                child.inc(n)

    def record_transport_error(self, channel: object, error: object, n: int = 1) -> None:
        """Count failed attempts; ``error`` is ``transient`` (retried) or ``permanent``."""
        self.transport_errors.labels(_closed(channel, CHANNELS), _closed(error, ERROR_CLASSES)).inc(
            n
        )

    def record_import_rows(self, tenant: object, kind: object, counts: Counts) -> None:
        """Add one import's rows: ``kind`` e.g. ``contacts``/``consent``, ``counts[outcome] = n``."""
        tenant, kind = self._tenant(tenant), _code(kind)
        for outcome, n in counts.items():
            if n:
                self.import_rows.labels(tenant, kind, _code(outcome)).inc(n)

    def record_ledger_events(self, tenant: object, counts: Counts) -> None:
        """Add recorded ledger events: ``counts[action] = n``."""
        tenant = self._tenant(tenant)
        for action, n in counts.items():
            if n:
                self.ledger_events.labels(tenant, _closed(action, LEDGER_ACTIONS)).inc(n)

    def record_inbound_mail(self, tenant: object, kind: object, n: int = 1) -> None:
        """Count one message (or recipient of one) the inbound listener handled; ``kind`` in
        INBOUND_KINDS. ``tenant`` None: no tenant could be told (recorded as ``other``)."""
        label = self._tenant(tenant) if tenant is not None else (ALL_TENANTS if not self.per_tenant else OTHER)
        self.inbound_mail.labels(label, _closed(kind, INBOUND_KINDS)).inc(n)

    def record_webhook_attempts(self, tenant: object, counts: Counts) -> None:
        """Add outbound webhook attempts: ``counts[outcome] = n`` (delivered, retry, failed)."""
        tenant = self._tenant(tenant)
        for outcome, n in counts.items():
            if n:
                self.webhook_attempts.labels(tenant, _closed(outcome, WEBHOOK_OUTCOMES)).inc(n)

    # --- timings ------------------------------------------------------------------------

    @contextmanager
    def time_gate_batch(self, channel: object) -> Iterator[None]:
        with _observing(self.gate_batch_seconds.labels(_closed(channel, CHANNELS))):
            yield

    @contextmanager
    def time_batch_load(self) -> Iterator[None]:
        with _observing(self.batch_load_seconds):
            yield

    @contextmanager
    def time_render(self, channel: object) -> Iterator[None]:
        with _observing(self.render_seconds.labels(_closed(channel, CHANNELS))):
            yield

    def render_histogram(self, channel: object) -> Any:
        """The render histogram of one channel, to observe once per message on a hot path
        (a labelled child; looking the labels up per message would cost as much again)."""
        return self.render_seconds.labels(_closed(channel, CHANNELS))

    def observe_batch_load(self, seconds: float) -> None:
        """One batch's load, timed where it was read (engine/db/batches.py ``Batch.load_s``)."""
        self.batch_load_seconds.observe(seconds)

    def prime_deliveries(self, tenant: object, channel: object) -> None:
        """Create a sender's delivery series at 0 before anything is sent.

        Prometheus's ``increase()`` and ``rate()`` count changes between samples: a series
        whose first sample is already 1,000 contributes nothing for those 1,000. A process
        that lives for one campaign (`campaign send --metrics-port`) primes its series and
        waits for one scrape before sending, so every send is seen as an increase.
        """
        tenant, channel = self._tenant(tenant), _closed(channel, CHANNELS)
        for state in sorted(DELIVERY_STATES):
            self.deliveries.labels(tenant, channel, state)

    def time_dispatch(self, channel: object) -> _Dispatch:
        """Around one transport call (`with`): counts it in flight and observes its round trip."""
        children = self._dispatch_children.get(channel)
        if children is None:
            closed = _closed(channel, CHANNELS)
            children = self._dispatch_children[channel] = (self.inflight.labels(closed), self.dispatch_seconds.labels(closed))
        return _Dispatch(*children)

    # --- gauges -------------------------------------------------------------------------

    def set_active_campaigns(self, counts: Mapping[tuple[Any, Any], int]) -> None:
        """Replace the active-campaign gauge: ``counts[(tenant, channel)] = n``.

        Pairs absent from ``counts`` drop to 0 rather than disappearing, so a scrape never
        sees a gap. Call it from one process (the API), from a periodic database count.
        """
        current: dict[tuple[str, str], int] = {}
        for (tenant, channel), n in counts.items():
            key = (self._tenant(tenant), _closed(channel, CHANNELS))
            current[key] = current.get(key, 0) + n
        for key in self._active_seen - current.keys():
            self.campaigns_active.labels(*key).set(0)
        for key, n in current.items():
            self.campaigns_active.labels(*key).set(n)
        self._active_seen |= current.keys()


class _Dispatch:
    """One transport call's timing. A plain class with the label children looked up once per
    channel, not a generator context manager with two `labels()` calls: it runs once per
    message, on the sender's one core."""

    __slots__ = ("_inflight", "_seconds", "_started")

    def __init__(self, inflight: Any, seconds: Any) -> None:
        self._inflight = inflight
        self._seconds = seconds
        self._started = 0.0

    def __enter__(self) -> None:
        self._inflight.inc()
        self._started = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self._seconds.observe(time.perf_counter() - self._started)
        self._inflight.dec()


@contextmanager
def _observing(histogram: Histogram) -> Iterator[None]:
    # perf_counter: monotonic and high resolution; durations only, never a point in time.
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


_DEFAULT = Instruments(REGISTRY)


def default_instruments() -> Instruments:
    """The process-wide instruments, on prometheus-client's global registry."""
    return _DEFAULT
