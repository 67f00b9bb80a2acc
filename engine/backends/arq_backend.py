"""The `arq` backend: batch jobs on Redis, run by any number of `consentry worker` processes.

Each batch of the audience is one job whose id is deterministic — (campaign, first contact
id of the batch) — so enqueuing twice is harmless: arq refuses a second job with a live id,
and the delivery ledger makes a re-run of a finished batch send nothing. The job runs the
very function the inline backend runs, on an id range; workers on many machines share one
PostgreSQL database.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import result_key_prefix
from arq.jobs import Job, JobStatus
from arq.worker import func

from engine.config import Settings
from engine.db.batches import iter_bounds
from engine.db.session import make_engine
from engine.db.tenants import TenantRecord
from engine.send.launch import CampaignRecord
from engine.send.pipeline import SendOptions
from engine.send.runner import SendResult, resume_target, run_range, settle

QUEUE = "consentry:batches"


def job_id(campaign_id: int, after_id: int) -> str:
    return f"consentry:campaign:{campaign_id}:after:{after_id}"


async def run_on_arq(settings: Settings, record: CampaignRecord, tenant: TenantRecord, options: SendOptions) -> SendResult:
    """Enqueue every batch of the campaign, wait until workers finished them, settle."""
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url), default_queue_name=QUEUE)
    engine = make_engine(settings.database_url)
    try:
        jobs: list[Job] = []
        async for after_id, upto_id in iter_bounds(engine, tenant.id, record.definition.model.audience, options.batch_size):
            jobs.append(await _enqueue(redis, record, tenant, options, after_id, upto_id))
        summary_total = None
        for job in jobs:
            result = await job.result(timeout=None, poll_delay=0.1)
            summary_total = _merge(summary_total, result)
        from engine.send.pipeline import RunSummary

        summary = RunSummary()
        if summary_total:
            summary.sent, summary.failed = summary_total["sent"], summary_total["failed"]
            summary.retry_later, summary.reconciled = summary_total["retry_later"], summary_total["reconciled"]
            for key, n in summary_total["decided"]:
                summary.count(key[0], key[1], n)
        return await settle(engine, record, tenant, summary)
    finally:
        await redis.aclose()
        await engine.dispose()


async def _enqueue(redis: ArqRedis, record: CampaignRecord, tenant: TenantRecord, options: SendOptions, after_id: int, upto_id: int) -> Job:
    identifier = job_id(record.id, after_id)
    payload = {
        "tenant": record.definition.tenant, "campaign": record.code, "after_id": after_id, "upto_id": upto_id,
        "options": asdict(options),
    }
    job = await redis.enqueue_job("send_batch", payload, _job_id=identifier)
    if job is not None:
        return job
    existing = Job(identifier, redis)
    if await existing.status() == JobStatus.complete:
        # A finished batch of an earlier run (a resume): its result is only a record, so
        # clear it and run the batch again; the ledger skips everyone already final.
        await redis.delete(result_key_prefix + identifier)
        job = await redis.enqueue_job("send_batch", payload, _job_id=identifier)
        if job is not None:
            return job
    return existing  # queued or running right now: wait for that one


def _merge(total: dict | None, result: dict) -> dict:
    if total is None:
        return {**result, "decided": list(result["decided"])}
    for key in ("sent", "failed", "retry_later", "reconciled"):
        total[key] += result[key]
    total["decided"].extend(result["decided"])
    return total


async def send_batch(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The job: one batch of one campaign, gated just before it is sent."""
    settings: Settings = ctx["settings"]
    engine = ctx["engine"]
    record, tenant = await resume_target(engine, payload["tenant"], payload["campaign"])
    options = SendOptions(**payload["options"])
    summary = await run_range(engine, record, tenant, settings, options, id_range=(payload["after_id"], payload["upto_id"]))
    return {
        "sent": summary.sent, "failed": summary.failed, "retry_later": summary.retry_later,
        "reconciled": summary.reconciled, "decided": [[list(key), n] for key, n in summary.decided.items()],
    }


async def _startup(ctx: dict[str, Any]) -> None:
    settings = ctx.get("settings") or Settings.from_environ()
    ctx["settings"] = settings
    ctx["engine"] = make_engine(settings.database_url)


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def worker_settings(settings: Settings, burst: bool = False, max_jobs: int = 4) -> dict[str, Any]:
    """Keyword arguments for arq's Worker running our batch job."""
    return {
        "functions": [func(send_batch, name="send_batch", max_tries=3, timeout=3600)],
        "queue_name": QUEUE,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "ctx": {"settings": settings},
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


def run_worker_forever(settings: Settings, burst: bool = False) -> None:
    asyncio.run(run_worker(settings, burst=burst))
