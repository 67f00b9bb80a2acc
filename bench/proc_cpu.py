"""CPU seconds of other processes, read from Linux's /proc (the benches' servers)."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds of a PostgreSQL server so far: the postmaster, its live children
    (backends, autovacuum, checkpointer) and, in the postmaster's cutime and cstime, the
    children it has reaped (a backend that exits with its client keeps counting)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited between listdir and open: counted in the postmaster's cutime
        if int(entry) == postmaster:
            total += sum(int(field) for field in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS
