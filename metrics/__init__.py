"""Prometheus metrics for Consentry: instruments, and the ``/metrics`` endpoint.

The engine records per batch through an ``Instruments`` object (``default_instruments()``
in a running process, ``Instruments.fresh()`` in tests); ``docs/operations.md`` explains each
metric, the label policy, the Grafana dashboard (``metrics/dashboards``) and the alert rules
(``metrics/alerts.yml``).
"""

from typing import TYPE_CHECKING, Any

from metrics.instruments import ALL_TENANTS, NONE, OTHER, Instruments, default_instruments

if TYPE_CHECKING:
    from metrics.exporter import (
        REGISTRY_KEY,
        MetricsServer,
        add_metrics_route,
        metrics_handler,
        start_metrics_server,
    )

# The endpoint's names are imported on first use: the exporter brings in aiohttp (its
# import builds an SSL context), a third of a second that a command which records but
# serves nothing (`campaign check`, an import) would pay at start.
_EXPORTER = {"REGISTRY_KEY", "MetricsServer", "add_metrics_route", "metrics_handler", "start_metrics_server"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTER:
        from metrics import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")

__all__ = [
    "ALL_TENANTS",
    "NONE",
    "OTHER",
    "REGISTRY_KEY",
    "Instruments",
    "MetricsServer",
    "add_metrics_route",
    "default_instruments",
    "metrics_handler",
    "record_decisions",
    "record_deliveries",
    "record_import_rows",
    "record_ledger_events",
    "record_transport_error",
    "start_metrics_server",
]

# Shortcuts to the process-wide instruments, for code that has none passed in.
record_decisions = default_instruments().record_decisions
record_deliveries = default_instruments().record_deliveries
record_transport_error = default_instruments().record_transport_error
record_import_rows = default_instruments().record_import_rows
record_ledger_events = default_instruments().record_ledger_events
