"""Checking chunks in worker processes while the main process writes earlier ones.

    reader (main) ──chunk──▶ prepare (main, db) ──▶ check (worker processes)
                                                           │ in file order
                                         consume (main, db) ◀┘

Row checks (phone numbers, email syntax) are CPU-bound pure Python, so they run in a
process pool; the database writes stay in the main process, in file order, inside the
import's one transaction. At most `in_flight` chunks are read and not yet written, so
memory stays flat whatever the file's size. While the database works on one chunk (in
the driver's thread or server) the main thread reads and submits the next ones.

`prepare` and `consume` share the one database connection, so they never overlap: a lock
orders them. A file of one chunk is checked in the main process: starting workers costs
more than it saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import multiprocessing
import os
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

__all__ = ["DEFAULT_WORKERS", "run_pipeline"]

C = TypeVar("C")
R = TypeVar("R")



def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may run on (containers)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Beyond a few workers the main process (reading, writing) is the bottleneck.
DEFAULT_WORKERS = max(1, min(4, _usable_cpus()))


async def run_pipeline(
    chunks: Iterable[C],
    check: Callable[..., R],
    *,
    prepare: Callable[[C], Awaitable[tuple]],
    consume: Callable[[C, R], Awaitable[None]],
    workers: int = DEFAULT_WORKERS,
) -> None:
    """Run `consume(chunk, check(*await prepare(chunk)))` for every chunk, in order.

    `check` must be picklable (a module-level function or a partial of one); it runs in
    `workers` processes (0: in this process).
    """
    iterator = iter(chunks)
    head = list(itertools.islice(iterator, 2))
    with _without_cycle_collection():
        if workers < 1 or len(head) < 2:
            for chunk in itertools.chain(head, iterator):
                await consume(chunk, check(*await prepare(chunk)))
            return
        # spawn, not fork: the main process has threads (the SQLite driver's, the
        # executor's), and forking a threaded process can copy a held lock into the child.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        try:
            await _pipelined(itertools.chain(head, iterator), check, prepare, consume, pool, 2 * workers)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _without_cycle_collection():
    # Chunks are trees of tuples and strings that reference counting frees; the cycle
    # collector only rescans the rows in flight, again and again: a fifth of the main
    # process's time on a large file (measured, docs/benchmarks-import.md).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _pipelined(
    chunks: Iterable[C],
    check: Callable[..., R],
    prepare: Callable[[C], Awaitable[tuple]],
    consume: Callable[[C, R], Awaitable[None]],
    pool: ProcessPoolExecutor,
    in_flight: int,
) -> None:
    loop = asyncio.get_running_loop()
    database = asyncio.Lock()
    queue: asyncio.Queue[tuple[C, asyncio.Future[Any]] | None] = asyncio.Queue(maxsize=in_flight)

    async def write() -> None:
        while (item := await queue.get()) is not None:
            chunk, checked = item
            result = await checked
            async with database:
                await consume(chunk, result)

    writer = asyncio.create_task(write())
    try:
        for chunk in chunks:
            async with database:
                arguments = await prepare(chunk)
            future = loop.run_in_executor(pool, check, *arguments)
            await _put(queue, (chunk, future), writer)
        await _put(queue, None, writer)
        await writer
    finally:
        if not writer.done():
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        # On failure, checks still queued are abandoned: retrieve them so that a broken
        # pool's error is reported once, by the writer, not once per chunk.
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                item[1].cancel()
                await asyncio.gather(item[1], return_exceptions=True)


async def _put(queue: asyncio.Queue, item: object, writer: asyncio.Task) -> None:
    """Queue an item, waiting for room, unless the writer has failed (then raise its error)."""
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()
        await asyncio.gather(put, return_exceptions=True)
    if writer.done():
        writer.result()  # raises the writer's error
        if item is not None:
            raise RuntimeError("the import's writer stopped before the end of the file")
