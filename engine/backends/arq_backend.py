"""The `arq` backend: batch jobs on Redis, run by any number of `consentry worker` processes.

Each batch of the audience is one job whose id is deterministic — (campaign, first contact
id of the batch) — so enqueuing twice is harmless: arq refuses a second job with a live id,
and the delivery ledger makes a re-run of a finished batch send nothing. The job runs the
very function the inline backend runs, on an id range; workers on many machines share one
PostgreSQL database.

Workers claim rows exactly as the inline runner does (engine/send/claims.py), so workers,
an inline `campaign resume`, a second `send` and a cron job can all run at once and each
recipient still gets one message.

A killed worker: arq keeps a running job's "in progress" key for the job's whole timeout
(an hour here), and no other worker touches the job meanwhile. Our job instead keeps that
key alive itself, `claim_ttl / 6` at a time with a lifetime of `claim_ttl`: when the
worker dies the key lapses with its claims, another worker picks the job up, reclaims the
rows left in doubt, and `send --backend arq` finishes. A job that finds rows of its range
still held by a runner that has gone quiet waits for those claims to lapse, then takes them.

The campaign's `rate.per_second` is the sender's, whatever the number of workers: every job
paces through one Redis key per sender (engine/backends/shared_rate.py). When that key
cannot be reached the job stops sending, hands its unsent rows back to `pending`, and asks
arq to run it again later (`Retry`), up to MAX_TRIES: a batch is never sent unpaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus, ResultNotFound
from arq.worker import Retry, func
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.backends.shared_rate import SharedRateLimiter
from engine.clock import Clock, offset_clock, system_clock
from engine.config import Settings
from engine.db.batches import iter_bounds
from engine.db.deliveries import campaign_status
from engine.db.session import sending_engine
from engine.db.states import CampaignStatus
from engine.db.tenants import TenantRecord
from engine.send.errors import DatabaseUnreachable, RateLimitUnavailable
from engine.send.launch import CampaignRecord
from engine.send.pipeline import RunSummary, SendOptions
from engine.send.ratelimit import sender_key
from engine.send.runner import SendResult, resume_target, run_range, settle
from engine.transports.errors import StopCause

log = logging.getLogger(__name__)
QUEUE = "consentry:batches"
# A batch job killed this many times in a row is reported failed rather than retried for ever.
MAX_TRIES = 5
# Batch jobs one worker runs at once (its database pool is sized for them).
MAX_JOBS = 4
# The wait before a job stopped early (rate limit unreachable, claims lost) runs again, times its try.
RATE_RETRY_S = 2.0
# How often an enqueuer looks for a job's result in Redis.
POLL_S = 0.1


def job_id(campaign_id: int, after_id: int) -> str:
    return f"consentry:campaign:{campaign_id}:after:{after_id}"


async def run_on_arq(
    settings: Settings, record: CampaignRecord, tenant: TenantRecord, options: SendOptions, clock: Clock
) -> SendResult:
    """Enqueue every batch of the campaign, wait until workers finished them, settle."""
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url), default_queue_name=QUEUE)
    engine = sending_engine(settings.database_url, settings.claim_ttl_s)
    try:
        # A send `--at` a later instant: every job runs on the same shifted clock.
        offset_us = clock() - system_clock()
        jobs: list[tuple[int, int, Job]] = []
        async for after_id, upto_id in iter_bounds(engine, tenant.id, record.definition.model.audience, options.batch_size):
            jobs.append((after_id, upto_id, await _enqueue(redis, record, tenant, options, after_id, upto_id, offset_us)))
        summary_total = None
        for after_id, upto_id, job in jobs:
            enqueue = partial(_enqueue, redis, record, tenant, options, after_id, upto_id, offset_us)
            result = await _outcome(job, enqueue)
            # `_enqueue` waits for a job of the same batch that is still running. On a resume
            # right after a pause, that is the paused run's job, which then ends halted with
            # its range unsent: while the campaign is running, the batch runs again.
            while result.get("halted") and await _running(engine, record.id):
                result = await _outcome(await enqueue(), enqueue)
            summary_total = _merge(summary_total, result)
        summary = RunSummary()
        if summary_total:
            summary.sent, summary.failed = summary_total["sent"], summary_total["failed"]
            summary.retry_later, summary.reconciled = summary_total["retry_later"], summary_total["reconciled"]
            for key, n in summary_total["decided"]:
                summary.count(key[0], key[1], n)
            summary.fatal = summary_total.get("fatal")
            summary.stop_cause = StopCause(summary_total["stop_cause"]) if summary_total.get("stop_cause") else None
        return await settle(engine, record, tenant, summary, clock, system_clock)
    finally:
        await redis.aclose()
        await engine.dispose()


async def _enqueue(
    redis: ArqRedis, record: CampaignRecord, tenant: TenantRecord, options: SendOptions, after_id: int, upto_id: int,
    clock_offset_us: int,
) -> Job:
    identifier = job_id(record.id, after_id)
    payload = {
        "tenant": record.definition.tenant, "campaign": record.code, "after_id": after_id, "upto_id": upto_id,
        "options": asdict(options),
        # A send `--at` a later instant runs every worker on that same shifted clock.
        "clock_offset_us": clock_offset_us,
    }
    while True:
        job = await redis.enqueue_job("send_batch", payload, _job_id=identifier)
        if job is not None:
            return job
        # Our queue named: a Job made by hand is otherwise looked for in arq's default queue,
        # and its `result()` raises ResultNotFound at once while the job runs (a resume that
        # found the paused run's job still running stopped there, leaving the rest pending).
        existing = Job(identifier, redis, _queue_name=QUEUE)
        status = await existing.status()
        if status == JobStatus.complete:
            # A finished batch of an earlier run (a resume): its result is only a record, so
            # clear it and run the batch again; the ledger skips everyone already final.
            await redis.delete(result_key_prefix + identifier)
            continue
        if status == JobStatus.not_found:
            # Gone since arq refused the id: another run cleared its result to run the batch
            # again and is enqueuing it right now. Try again: enqueue it or join that one.
            await asyncio.sleep(POLL_S)
            continue
        # Queued or running right now: wait for that one. Said in the log, so an operator sees
        # why a resumed run sends nothing yet (it may be the paused run's job, finishing).
        log.info("%s is queued or running already: waiting for it", identifier)
        return existing


async def _outcome(job: Job, enqueue: Callable[[], Awaitable[Job]]) -> dict[str, Any]:
    """The job's result; if it is gone, the batch's next job's."""
    while True:
        try:
            return await job.result(timeout=None, poll_delay=POLL_S)
        except ResultNotFound:
            # Neither a result nor in the queue: two runs waited on one job (a launch and a
            # resume on a paused run's job) and the other cleared its result to run the batch
            # again, its new job not queued yet. Enqueue it or join that one.
            job = await enqueue()


def _merge(total: dict | None, result: dict) -> dict:
    if total is None:
        return {**result, "decided": list(result["decided"])}
    for key in ("sent", "failed", "retry_later", "reconciled"):
        total[key] += result[key]
    total["decided"].extend(result["decided"])
    # The first batch that stopped on a relay fault says why (they all would).
    total["fatal"] = total.get("fatal") or result.get("fatal")
    total["stop_cause"] = total.get("stop_cause") or result.get("stop_cause")
    return total


async def send_batch(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The job: one batch of one campaign, gated just before it is sent."""
    settings: Settings = ctx["settings"]
    engine = ctx["engine"]
    options = SendOptions(**payload["options"])
    offset = payload.get("clock_offset_us", 0)
    clock = offset_clock(offset) if offset else system_clock
    id_range = (payload["after_id"], payload["upto_id"])
    heartbeat = asyncio.create_task(_keep_in_progress(ctx["redis"], ctx["job_id"], options.claim_ttl_s))
    try:
        record, tenant = await resume_target(engine, payload["tenant"], payload["campaign"])
        rate = record.definition.model.rate
        pacer = SharedRateLimiter(ctx["redis"], sender_key(record, tenant), rate.per_second) if rate else None
        # run_range waits out rows of the range that another runner holds (see its doc).
        try:
            summary = await run_range(
                engine, record, tenant, settings, options, id_range=id_range, clock=clock, lease_clock=system_clock,
                pacer=pacer,
            )
        except (RateLimitUnavailable, DatabaseUnreachable) as exc:
            # Nothing of the range is lost: unsent rows are pending (or claimed, lapsing).
            log.warning("%s: %s; the batch runs again later", ctx["job_id"], exc)
            raise Retry(defer=RATE_RETRY_S * ctx.get("job_try", 1)) from exc
        if summary.lost_claims:
            # This worker stalled past its claims (a starved host, the database out of reach
            # for a while) and stopped with part of its range unsent: another try finishes
            # it. Rows sent meanwhile are final and skipped; rows others took are theirs.
            log.warning("%s: lost its claims; the batch runs again", ctx["job_id"])
            raise Retry(defer=RATE_RETRY_S * ctx.get("job_try", 1))
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
    return {
        "sent": summary.sent, "failed": summary.failed, "retry_later": summary.retry_later,
        "reconciled": summary.reconciled, "decided": [[list(key), n] for key, n in summary.decided.items()],
        "fatal": summary.fatal, "stop_cause": summary.stop_cause.value if summary.stop_cause else None,
        "halted": str(summary.halted) if summary.halted else None,
    }


async def _running(engine: AsyncEngine, campaign_id: int) -> bool:
    async with engine.connect() as conn:
        return await campaign_status(conn, campaign_id) == CampaignStatus.RUNNING


async def _keep_in_progress(redis: ArqRedis, identifier: str, ttl_s: float) -> None:
    """Keep arq's in-progress mark of this job alive `ttl_s` at a time (see the module doc)."""
    key = in_progress_key_prefix + identifier
    while True:
        try:
            await redis.pexpire(key, int(ttl_s * 1000))
        except Exception:  # noqa: BLE001 - a missed beat only lets another worker start early; claims still hold
            log.warning("could not renew arq's in-progress mark of %s", identifier, exc_info=True)
        await asyncio.sleep(ttl_s / 6)


async def _startup(ctx: dict[str, Any]) -> None:
    settings = ctx.get("settings") or Settings.from_environ()
    ctx["settings"] = settings
    ctx["engine"] = sending_engine(settings.database_url, settings.claim_ttl_s, runs=ctx.get("max_jobs", MAX_JOBS))


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def worker_settings(settings: Settings, burst: bool = False, max_jobs: int = MAX_JOBS) -> dict[str, Any]:
    """Keyword arguments for arq's Worker running our batch job."""
    return {
        "functions": [func(send_batch, name="send_batch", max_tries=MAX_TRIES, timeout=3600)],
        "queue_name": QUEUE,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "ctx": {"settings": settings, "max_jobs": max_jobs},
        "burst": burst,
        "poll_delay": 0.1 if burst else 0.5,
        "max_jobs": max_jobs,
        # Results are a record for the enqueuer; the delivery ledger is the truth.
        "keep_result": 3600,
        "handle_signals": not burst,
    }


async def run_worker(settings: Settings, burst: bool = False) -> None:
    from arq.worker import Worker

    worker = Worker(**worker_settings(settings, burst=burst))
    try:
        await worker.async_run()
    finally:
        await worker.close()
