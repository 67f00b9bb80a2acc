"""Outbound webhooks: a tenant's endpoints receive signed JSON events (Standard Webhooks)
for consent changes, finished campaigns and failed deliveries, at least once, from a
transactional outbox (docs/api.md, "Webhooks out").

- `events`: the event types and the JSON body;
- `outbox`: writing events in the transaction that records what they report;
- `endpoints`: the registry (create, list, delete) and each endpoint's deliveries;
- `claims`, `dispatcher`: claiming due messages, POSTing them, retries with backoff;
- `signing`: the `webhook-id` / `webhook-timestamp` / `webhook-signature` headers.

The dispatcher (aiohttp) is imported from its module, not from here, so recording a ledger
event does not load an HTTP client.
"""

from engine.webhooks.endpoints import (
    DeliveryRecord,
    EndpointRecord,
    create_endpoint,
    delete_endpoint,
    endpoint_deliveries,
    get_endpoint,
    list_endpoints,
    validate_url,
)
from engine.webhooks.events import EventType
from engine.webhooks.outbox import enqueue_campaign_finished, enqueue_delivery_failed, ledger_outbox
from engine.webhooks.states import MessageState

__all__ = [
    "DeliveryRecord",
    "EndpointRecord",
    "EventType",
    "MessageState",
    "create_endpoint",
    "delete_endpoint",
    "endpoint_deliveries",
    "enqueue_campaign_finished",
    "enqueue_delivery_failed",
    "get_endpoint",
    "ledger_outbox",
    "list_endpoints",
    "validate_url",
]
