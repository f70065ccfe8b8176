"""How much CPU other programs took while a phase ran (Linux /proc), so that a run on a
shared machine says so instead of passing off a busy neighbour's cost as the service's.

"Ours" is this process and its descendants (servers, workers, load generators) and the
PostgreSQL backends connected to the benchmark database; PostgreSQL's own background
processes and kernel threads are left out; everything else is "other"."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass
class Snapshot:
    at: float
    busy_ticks: int
    other: dict[int, int]  # pid -> CPU ticks of processes that are not ours


def _busy_ticks() -> int:
    try:
        fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0
    values = [int(v) for v in fields[:8]]
    return sum(values) - values[3] - values[4]  # less idle and iowait


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime + stime ticks)."""
    table: dict[int, tuple[int, int]] = {}
    try:
        entries = os.listdir(PROC)
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            raw = (PROC / entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def _title(pid: int) -> str:
    try:
        return (
            (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def snapshot(database: str | None) -> Snapshot:
    me = os.getpid()
    table = _table()
    ours: set[int] = {me}
    changed = True
    while changed:  # descendants of this process
        changed = False
        for pid, (ppid, _) in table.items():
            if pid not in ours and ppid in ours:
                ours.add(pid)
                changed = True
    other: dict[int, int] = {}
    for pid, (ppid, ticks) in table.items():
        if pid in ours or pid == 2 or ppid == 2 or ticks == 0:
            continue
        title = _title(pid)
        if title.startswith("postgres:"):
            # "postgres: 15/main: USER DATABASE HOST(PORT) STATE" for a backend;
            # background processes name no database and are shared by everyone.
            parts = title.split()
            if len(parts) < 5 or "(" not in title or (database and database in parts):
                continue
        other[pid] = ticks
    return Snapshot(time.monotonic(), _busy_ticks(), other)


def other_cores(start: Snapshot, end: Snapshot) -> float:
    """CPU (in cores) that processes not belonging to the benchmark used in between."""
    elapsed = end.at - start.at
    if elapsed <= 0:
        return 0.0
    ticks = sum(t - start.other.get(pid, 0) for pid, t in end.other.items())
    return max(0.0, ticks / CLOCK_TICKS / elapsed)


def busy_cores(start: Snapshot, end: Snapshot) -> float:
    elapsed = end.at - start.at
    return (end.busy_ticks - start.busy_ticks) / CLOCK_TICKS / elapsed if elapsed > 0 else 0.0


def wait_quiet(database: str | None, limit_seconds: float, threshold: float = 0.15) -> float:
    """Wait (at most ``limit_seconds``) for a second in which other programs use less than
    ``threshold`` of a core; returns the last reading."""
    deadline = time.monotonic() + limit_seconds
    reading = 0.0
    while True:
        start = snapshot(database)
        time.sleep(1.0)
        reading = other_cores(start, snapshot(database))
        if reading < threshold or time.monotonic() >= deadline:
            return reading
