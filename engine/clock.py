"""The one clock: every instant Consentry records or gates at comes from here.

A clock is a callable returning microseconds since the Unix epoch, UTC. Commands build one
at start-up (the wall clock, or a clock that starts at a later `--at` and runs at the wall
clock's pace) and pass it down; nothing else reads wall time. Tests inject a clock moved a
year ahead, and the whole product follows it.

Durations (timeouts, benchmarks, progress) use `time.monotonic` / `perf_counter`, which are
not instants and are never recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""Microseconds since the epoch, UTC."""


def system_clock() -> int:
    """The wall clock. Only call it through a `Clock` that was passed to you."""
    return time.time_ns() // 1000


def shifted_clock(start_us: int, base: Clock = system_clock) -> Clock:
    """A clock that reads `start_us` now and then advances at `base`'s pace.

    `campaign send --at LATER` runs on it: gating, claims and every row the run stamps
    move forward together from that instant, so a replay at the same instant sees what
    the run did.
    """
    offset = start_us - base()
    return lambda: base() + offset


def offset_clock(offset_us: int, base: Clock = system_clock) -> Clock:
    """`base` moved by a constant (a test a year ahead)."""
    return lambda: base() + offset_us
