"""Metrics: recorded per batch, scraped over real HTTP (metrics/)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from enum import StrEnum
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from metrics import Instruments, add_metrics_route, start_metrics_server

ROOT = Path(__file__).resolve().parents[2]


class Reason(StrEnum):  # stands in for gating's reason enum: any str enum is a label value
    OPTED_OUT = "opted_out"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def test_a_real_scrape_shows_what_was_recorded() -> None:
    instruments = Instruments.fresh()
    instruments.record_decisions(
        "acme-motors", "sms", "bulk",
        {("send", None): 900, ("suppress", Reason.OPTED_OUT): 70, ("defer", "quiet_hours"): 30},
    )  # fmt: skip
    instruments.record_decisions("acme-motors", "sms", "bulk", {("send", None): 100})
    instruments.record_deliveries("acme-motors", "sms", {"sent": 990, "failed": 10})
    instruments.record_transport_error("sms", "transient", 4)
    instruments.record_transport_error("sms", "permanent")
    instruments.record_import_rows("acme-motors", "contacts", {"written": 3, "rejected": 1})
    instruments.record_ledger_events("acme-motors", {"opt_out": 2, "grant": 5})
    with instruments.time_gate_batch("sms"), instruments.time_render("sms"):
        pass
    with instruments.time_batch_load():
        pass
    with instruments.time_dispatch("sms"):
        pass

    with start_metrics_server("127.0.0.1", 0, registry=instruments.registry) as server:
        assert server.port != 0
        samples = _samples(_scrape(server.url))

    tenant = {"tenant": "acme-motors", "channel": "sms"}
    decisions = {"kind": "bulk", **tenant}
    assert (
        samples[_key("consentry_decisions_total", decision="send", reason="none", **decisions)]
        == 1000
    )
    assert (
        samples[
            _key("consentry_decisions_total", decision="suppress", reason="opted_out", **decisions)
        ]
        == 70
    )
    assert (
        samples[
            _key("consentry_decisions_total", decision="defer", reason="quiet_hours", **decisions)
        ]
        == 30
    )
    assert samples[_key("consentry_deliveries_total", state="sent", **tenant)] == 990
    assert samples[_key("consentry_deliveries_total", state="failed", **tenant)] == 10
    assert samples[_key("consentry_transport_errors_total", channel="sms", error="transient")] == 4
    assert samples[_key("consentry_transport_errors_total", channel="sms", error="permanent")] == 1
    assert (
        samples[
            _key(
                "consentry_import_rows_total",
                tenant="acme-motors",
                kind="contacts",
                outcome="rejected",
            )
        ]
        == 1
    )
    assert samples[_key("consentry_ledger_events_total", tenant="acme-motors", action="grant")] == 5
    for histogram in (
        "consentry_gate_batch_seconds",
        "consentry_render_seconds",
        "consentry_dispatch_seconds",
    ):
        assert samples[_key(f"{histogram}_count", channel="sms")] == 1
    assert samples[_key("consentry_batch_load_seconds_count")] == 1
    assert samples[_key("consentry_inflight", channel="sms")] == 0
    assert not any(name.endswith("_created") for name, _ in samples)


def test_the_metrics_server_stops_listening_when_closed() -> None:
    server = start_metrics_server(registry=Instruments.fresh().registry)
    url = server.url
    _scrape(url)
    server.close()
    with pytest.raises(OSError):
        _scrape(url)


def test_a_short_lived_process_waits_for_a_scrape_of_its_last_counts() -> None:
    instruments = Instruments.fresh()
    with start_metrics_server(registry=instruments.registry) as server:
        instruments.record_deliveries("acme-motors", "sms", {"sent": 400})
        _scrape(server.url)  # Prometheus's last scrape before the end: it saw 400
        instruments.record_deliveries("acme-motors", "sms", {"sent": 3})
        # No scrape comes: the wait gives up, and says so.
        assert server.wait_for_scrape(0.05) is False
        waited: list[bool] = []
        waiting = threading.Thread(target=lambda: waited.append(server.wait_for_scrape(30)))
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive()  # the earlier scrape does not count: it predates the last count
        final = _samples(_scrape(server.url))
        waiting.join(30)
        assert waited == [True]
        assert final[_key("consentry_deliveries_total", tenant="acme-motors", channel="sms", state="sent")] == 403


def test_priming_creates_the_delivery_series_at_zero() -> None:
    # A series first scraped at 0 lets increase() count its first batch.
    instruments = Instruments.fresh()
    instruments.prime_deliveries("acme-motors", "email")
    value = instruments.registry.get_sample_value
    for state in ("sent", "failed", "opt_in_request"):
        assert value("consentry_deliveries_total", {"tenant": "acme-motors", "channel": "email", "state": state}) == 0


async def test_the_aiohttp_handler_serves_the_apps_registry() -> None:
    instruments = Instruments.fresh()
    instruments.record_deliveries("acme-motors", "email", {"sent": 3})
    app = web.Application()
    add_metrics_route(app, instruments.registry)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
            async with session.get(
                f"http://127.0.0.1:{port}/metrics", headers=openmetrics
            ) as response:
                assert response.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await response.text()).endswith("# EOF\n")
    finally:
        await runner.cleanup()
    samples = _samples(text)
    assert (
        samples[
            _key("consentry_deliveries_total", tenant="acme-motors", channel="email", state="sent")
        ]
        == 3
    )


def test_inflight_counts_transport_calls_until_they_return() -> None:
    instruments = Instruments.fresh()
    gauge = ("consentry_inflight", {"channel": "email"})
    with instruments.time_dispatch("email"), instruments.time_dispatch("email"):
        assert instruments.registry.get_sample_value(*gauge) == 2
    with pytest.raises(ConnectionError), instruments.time_dispatch("email"):
        raise ConnectionError("relay went away")
    assert instruments.registry.get_sample_value(*gauge) == 0
    assert (
        instruments.registry.get_sample_value(
            "consentry_dispatch_seconds_count", {"channel": "email"}
        )
        == 3
    )


def test_label_values_outside_their_sets_become_other() -> None:
    # A contact-level value passed by mistake must not become a time series of its own.
    instruments = Instruments.fresh()
    instruments.record_decisions(
        "Not A Tenant!", "pigeon", "bulk", {("suppress", "jane@example.com"): 1, ("maybe", None): 1}
    )
    instruments.record_transport_error("sms", "550 5.1.1 <jane@example.com> unknown")
    instruments.record_ledger_events("acme-motors", {"+15550001111": 1})
    values = {
        (sample.labels.get("tenant"), sample.labels.get("channel"), sample.labels.get("decision"),
         sample.labels.get("reason"), sample.labels.get("error"), sample.labels.get("action"))
        for family in instruments.registry.collect() if family.type == "counter"
        for sample in family.samples
    }  # fmt: skip
    assert values == {
        ("other", "other", "suppress", "other", None, None),
        ("other", "other", "other", "none", None, None),
        (None, "sms", None, None, "other", None),
        ("acme-motors", None, None, None, None, "other"),
    }


def test_tenant_labels_can_be_collapsed_for_very_many_tenants() -> None:
    instruments = Instruments.fresh(per_tenant=False)
    instruments.record_deliveries("acme-motors", "sms", {"sent": 1})
    instruments.record_deliveries("zenith-cars", "sms", {"sent": 2})
    labels = {"tenant": "_all", "channel": "sms", "state": "sent"}
    assert instruments.registry.get_sample_value("consentry_deliveries_total", labels) == 3


def test_active_campaigns_gauge_is_replaced_without_gaps() -> None:
    instruments = Instruments.fresh()
    instruments.set_active_campaigns({("acme-motors", "sms"): 2, ("acme-motors", "email"): 1})
    instruments.set_active_campaigns({("acme-motors", "email"): 4})
    value = instruments.registry.get_sample_value
    assert value("consentry_campaigns_active", {"tenant": "acme-motors", "channel": "sms"}) == 0
    assert value("consentry_campaigns_active", {"tenant": "acme-motors", "channel": "email"}) == 4


def test_every_metric_named_by_alerts_and_dashboard_exists() -> None:
    # The rule and panel queries are strings nothing else checks: a renamed metric would
    # leave an alert that can never fire.
    registry = Instruments.fresh().registry
    exported = set()
    for family in registry.collect():
        exported.add(family.name)
        exported.update(
            f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum")
        )

    alerts = yaml.safe_load((ROOT / "metrics" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    assert all(rule.get("alert") and rule.get("annotations", {}).get("summary")
               for group in alerts["groups"] for rule in group["rules"])  # fmt: skip
    dashboard = json.loads((ROOT / "metrics" / "dashboards" / "consentry.json").read_text())
    expressions += [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    named = {name for expr in expressions for name in re.findall(r"\bconsentry_[a-z_]+", expr)}
    assert named, "no consentry metric referenced"
    assert named <= exported, named - exported
