"""Campaigns launched or resumed over the API, run beside the serving process.

`settings.launch_backend` (CONSENTRY_LAUNCH_BACKEND; "arq" when CONSENTRY_REDIS_URL is set,
else "inline") picks where the sending happens:

- inline: a background task of this process runs the campaign as `campaign resume` does
  (engine/send/runner.py), with its own database engine (a runner's: idle transactions
  end well before its claims lapse);
- arq: the task enqueues the campaign's batches for `consentry worker`s and waits for them
  (engine/backends/arq_backend.py), then settles the status.

Either way the claims of engine/send/claims.py keep every message single, and a pause
stops every runner within one claim renewal. At most one task per campaign runs in this
process; a launch or resume while it runs makes it run the campaign once more when it ends
(it may be finishing a run that a pause stopped, and would leave the rest). When the service
stops, its tasks are cancelled: rows they held lapse back after the claim ttl and a
`resume` (API or command line) finishes the campaign.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from engine.clock import Clock
from engine.config import Settings
from engine.send.pipeline import SendOptions

__all__ = ["CampaignRuns", "install", "runs"]

log = logging.getLogger(__name__)

# Messages in flight per campaign launched over the API (the command line's default).
CONCURRENCY = 16


class CampaignRuns:
    """The campaigns this process is sending, by campaign id."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()  # asked for while their task was running

    def options(self) -> SendOptions:
        s = self.settings
        return SendOptions(
            batch_size=s.batch_size, concurrency=CONCURRENCY, max_attempts=s.retry_attempts, retry_base_s=s.retry_base_s,
            claim_ttl_s=s.claim_ttl_s, policy_stop_after=s.smtp_policy_stop_after,
        )

    def start(self, campaign_id: int, tenant_code: str, code: str) -> bool:
        """Run the campaign in the background unless this process already does; True if started."""
        running = self.tasks.get(campaign_id)
        if running is not None and not running.done():
            self._again.add(campaign_id)
            return False
        task = asyncio.create_task(self._runs(campaign_id, tenant_code, code), name=f"campaign {tenant_code}/{code}")
        self.tasks[campaign_id] = task
        task.add_done_callback(lambda done: self.tasks.pop(campaign_id, None) if self.tasks.get(campaign_id) is done else None)
        return True

    async def _runs(self, campaign_id: int, tenant_code: str, code: str) -> None:
        while True:
            self._again.discard(campaign_id)
            await self._run(tenant_code, code)
            if campaign_id not in self._again:
                return

    async def _run(self, tenant_code: str, code: str) -> None:
        from engine.db.session import sending_engine
        from engine.send.runner import resume_target, run_campaign

        engine = sending_engine(self.settings.database_url, self.settings.claim_ttl_s)
        try:
            record, tenant = await resume_target(engine, tenant_code, code)
            if self.settings.launch_backend == "arq":
                from engine.backends.arq_backend import run_on_arq

                result = await run_on_arq(self.settings, record, tenant, self.options(), self.clock)
            else:
                result = await run_campaign(engine, record, tenant, self.settings, self.options(), clock=self.clock)
            log.info("campaign %s/%s: %s (this run sent %d)", tenant_code, code, result.status, result.summary.sent)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a background task has nobody to raise to: the log and the status say it
            log.exception("campaign %s/%s: the run stopped; POST .../resume continues it", tenant_code, code)
        finally:
            await engine.dispose()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


RUNS = web.AppKey("consentry_campaign_runs", CampaignRuns)


def install(app: web.Application, settings: Settings, clock: Clock) -> None:
    app[RUNS] = CampaignRuns(settings, clock)

    async def close(_app: web.Application) -> None:
        await app[RUNS].close()

    # on_shutdown: before the database engine is disposed (on_cleanup).
    app.on_shutdown.append(close)


def runs(request: web.Request) -> CampaignRuns:
    return request.config_dict[RUNS]
