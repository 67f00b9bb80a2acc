"""The capture store: `DIR/messages.jsonl`, one JSON object per accepted message.

FORMATS.md ("Sending") fixes the line: at least `channel` (`email` | `sms`), `to`, `from`,
`subject` (email), `body`, `headers` (email, a list of `[name, value]`), `received_at`
(ISO 8601 UTC ending in `Z`), plus `message_id` (email) or `sid` (SMS).

Both capture servers may append to the same file from different processes (the default
`DIR` is the same `./capture` for both). The file is opened with O_APPEND and every append
is one `os.write` of a whole line, so concurrent writers never interleave inside a line; a
reader may still see a last line that is not finished yet, and `read_messages` skips it.

A message is written before the server acknowledges it (the `250` after DATA, the `201`
of the Messages API): a sender that got the acknowledgement may forget the message, so the
capture server must not lose it, even to a kill -9 a moment later. `append` hands the line
to the operating system at once (one write, a few microseconds; no fsync: the page cache
survives the process, and a capture server is no mail spool that must survive a power cut).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE_NAME = "messages.jsonl"
DEFAULT_DIR = "capture"

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def utc_stamp(moment: datetime | None = None) -> str:
    """`2026-11-24T18:00:00.123456Z`: ISO 8601 UTC with the `Z` suffix FORMATS.md asks for."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class CaptureStore:
    """Append-only writer of `DIR/messages.jsonl`."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIR) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._fd: int | None = None
        self.lines_written = 0

    def open(self) -> None:
        """Create the directory and open the file for appending (idempotent)."""
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        """Write one message to the file; when this returns, it is there (for any reader,
        and whatever then happens to this process)."""
        self.open()
        view = memoryview((_encode(record) + "\n").encode("utf-8"))
        while view:  # a regular file takes it in one write; the loop is for the rare short write
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]
        self.lines_written += 1

    def close(self) -> None:
        """Close the file; the store can be reopened by appending again."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The file's messages (all writers); the last `limit` if given."""
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
