"""DKIM signing of a campaign's email, with the key of its sender's domain (tenant.yaml `dkim`).

Which key: the tenant's entry whose domain is the From address's domain or a parent of it
(relaxed alignment, as DMARC reads it); the longest such domain wins. A tenant with DKIM
keys that sends from a domain none of them covers is refused at launch: mail that should
be signed is never sent unsigned by accident. A tenant without keys sends unsigned (the
relay may sign).

Where: dkimpy signs in pure Python, about 7 ms a message for RSA 2048 (docs/benchmarks.md,
"DKIM"), which would cap one process at ~140 messages/s. A campaign therefore signs in a
pool of worker processes (`CONSENTRY_DKIM_PROCESSES`, default the number of CPUs), each
loading the key once; the event loop awaits the signature and keeps dispatching meanwhile.
Individual replies sign in-process: one message does not pay for a pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from campaigns.tenant_file import DkimKey
from engine.errors import ConsentryError
from engine.render import DkimError, DkimSigner

__all__ = ["DkimPool", "key_for", "load_signer"]


def key_for(keys: list[DkimKey], sender_email: str) -> DkimKey | None:
    """The key for mail from `sender_email`: None when the tenant signs nothing; an error
    when it has keys but none for this domain."""
    if not keys:
        return None
    domain = sender_email.rpartition("@")[2].lower()
    aligned = [key for key in keys if domain == key.domain or domain.endswith("." + key.domain)]
    if not aligned:
        configured = ", ".join(key.domain for key in keys)
        raise ConsentryError(
            f"no DKIM key for {domain} (the tenant signs {configured}): add one under `dkim` in "
            f"tenant.yaml, or send from a signed domain"
        )
    return max(aligned, key=lambda key: len(key.domain))


def load_signer(key: DkimKey) -> DkimSigner:
    """A signer for `key`, its file read now: a missing or bad key stops the launch."""
    try:
        pem = Path(key.key_file).read_bytes()
    except OSError as exc:
        raise ConsentryError(f"cannot read the DKIM key for {key.domain} ({key.key_file}): {exc.strerror or exc}") from None
    try:
        return DkimSigner(key.selector, key.domain, pem)
    except DkimError as exc:
        raise ConsentryError(f"the DKIM key for {key.domain} ({key.key_file}) cannot sign: {exc}") from None


_signer: DkimSigner | None = None  # one per worker process, set by _start


def _start(selector: str, domain: str, pem: bytes) -> None:
    global _signer
    _signer = DkimSigner(selector, domain, pem)


def _sign(message: bytes) -> bytes:
    assert _signer is not None, "the pool's initializer sets the signer"
    return _signer.sign(message) + message


class DkimPool:
    """Signs messages with one key in `processes` worker processes."""

    def __init__(self, signer: DkimSigner, processes: int | None = None) -> None:
        count = processes or os.cpu_count() or 1
        # spawn, not fork: the parent runs an event loop with threads (aiosqlite, the
        # resolver), and a forked child would inherit their locks mid-use.
        self._pool = ProcessPoolExecutor(
            max_workers=count, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start, initargs=(signer.selector, signer.domain, signer.key_pem),
        )
        self.processes = count

    async def sign(self, message: bytes) -> bytes:
        """`message` with its DKIM-Signature header in front."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, _sign, message)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
