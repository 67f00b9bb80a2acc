"""A progress bar for imports: on stderr, only when stderr is a terminal.

The import reports `(rows done, bytes done)` after each chunk it writes; the bar measures
bytes, the one total known before the file is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["ProgressCallback", "progress_bar"]

ProgressCallback = Callable[[int, int], None]


@contextmanager
def progress_bar(label: str, total_bytes: int, stream: TextIO) -> Iterator[ProgressCallback | None]:
    """Yields a callback that moves the bar, or None when `stream` is not a terminal."""
    if not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=True) as progress:
        task = progress.add_task(label, total=total_bytes or None, rows=0)

        def advance(rows: int, done_bytes: int) -> None:
            progress.update(task, completed=done_bytes, rows=rows)

        yield advance
