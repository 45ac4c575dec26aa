"""Small measuring tools for the benchmark: waiting, percentiles, peak memory from /proc."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import redis
import requests

from notifier.devtools.devstack import Child


def ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def wait(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def peak_mb(child: Child) -> float:
    return peak_mb_pid(child.process.pid if child.process else 0)


def with_children(pid: int) -> list[int]:
    """A process and its direct children, e.g. gunicorn's master and workers (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(p) for p in children.read_text().split())] if children.exists() else [pid]


def peak_mb_pid(pid: int) -> float:
    """VmHWM of a process and its direct children, in MB (Linux /proc)."""
    total = 0
    for each in with_children(pid):
        status = Path(f"/proc/{each}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time used so far by these processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children_cpu_seconds() -> float:
    """User plus system CPU time of this process's finished children, e.g. a load generator."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def machine(client: redis.Redis) -> dict[str, object]:
    """What the numbers were measured on: cores, Python, Redis, platform."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis": client.info("server")["redis_version"],
        "platform": platform.platform(),
    }


# Memory Redis counts in used_memory that is not data: buffers that come and go with
# clients and persistence (an AOF rewrite buffers every write until it ends, on 6.2).
_BUFFERS = ("mem_aof_buffer", "mem_clients_normal", "mem_clients_slaves", "mem_replication_backlog")


def stored_bytes(client: redis.Redis, timeout: float = 60) -> int:
    """Redis's used memory less its buffers, read when no AOF rewrite is running."""
    wait(lambda: not int(client.info("persistence").get("aof_rewrite_in_progress", 0)),
         "an AOF rewrite to end", timeout)  # fmt: skip
    info = client.info("memory")
    return int(info["used_memory"]) - sum(int(info.get(name, 0)) for name in _BUFFERS)
