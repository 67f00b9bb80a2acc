"""The capture store: `DIR/messages.jsonl`, one JSON object per accepted message.

FORMATS.md ("Sending") fixes the line: at least `channel` (`email` | `sms`), `to`, `from`,
`subject` (email), `body`, `headers` (email, a list of `[name, value]`), `received_at`
(ISO 8601 UTC ending in `Z`), plus `message_id` (email) or `sid` (SMS).

Both capture servers may append to the same file from different processes (the default
`DIR` is the same `./capture` for both). The file is opened with O_APPEND and every flush is
one `os.write` of whole lines, so concurrent writers never interleave inside a line; a
reader may still see a last line that is not finished yet, and `read_messages` skips it.

Writes are buffered and flushed by a timer (`FLUSH_INTERVAL_S`), on `flush()` and on
`close()`: one syscall per 50 ms instead of one per message keeps the file off the
server's CPU profile, and a reader still sees a message within 50 ms of its acceptance.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE_NAME = "messages.jsonl"
DEFAULT_DIR = "capture"
# The promise to readers: a message is on disk at most this long after it was accepted.
FLUSH_INTERVAL_S = 0.05
# A burst bigger than this is written at once rather than waiting for the timer.
FLUSH_BYTES = 1 << 20

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def utc_stamp(moment: datetime | None = None) -> str:
    """`2026-11-24T18:00:00.123456Z`: ISO 8601 UTC with the `Z` suffix FORMATS.md asks for."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class CaptureStore:
    """Append-only writer of `DIR/messages.jsonl`, used from one event loop.

    `append` never blocks on the disk: lines wait in memory until the flush timer (armed by
    the first line of a batch) or `flush()` writes them with one `os.write`.
    """

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIR,
                 flush_interval: float = FLUSH_INTERVAL_S) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.flush_interval = flush_interval
        self._fd: int | None = None
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._written = asyncio.Event()
        self._written.set()
        self.lines_written = 0

    def open(self) -> None:
        """Create the directory and open the file for appending (idempotent)."""
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        """Queue one message; it reaches the file within `flush_interval` seconds."""
        line = _encode(record) + "\n"
        self._pending.append(line)
        self._pending_bytes += len(line)
        self._written.clear()
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        """Write every queued line now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self.open()
            data = "".join(self._pending).encode("utf-8")
            count = len(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            view = memoryview(data)
            while view:  # a regular file takes it in one write; the loop is for the rare short write
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                view = view[written:]
            self.lines_written += count
        self._written.set()

    async def wait_written(self, timeout: float) -> None:
        """Wait until every appended line is in the file (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            await self._written.wait()

    def close(self) -> None:
        """Flush and close the file; the store can be reopened by appending again."""
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The file's messages (all writers), after flushing ours; the last `limit` if given."""
        self.flush()
        return read_messages(self.directory, limit)


def read_messages(directory: str | os.PathLike[str] = DEFAULT_DIR,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """Messages in `DIR/messages.jsonl`, oldest first; the last `limit` ones if given.

    A missing file is an empty store. A line that is not (yet) complete JSON is skipped: a
    writer in another process may be in the middle of appending it.
    """
    path = Path(directory) / FILE_NAME
    try:
        # One line more than asked for: the last one may be a partial line, skipped below.
        lines = list(_tail_lines(path, limit + 1)) if limit else path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    messages = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            messages.append(record)
    return messages[-limit:] if limit else messages


def _tail_lines(path: Path, limit: int, block: int = 1 << 16) -> Iterator[bytes]:
    """The last `limit` lines of a file, read backwards in blocks (the file may be large)."""
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= limit:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.splitlines()
    if position > 0:
        lines = lines[1:]  # the first one is cut
    return iter(lines[-limit:])
