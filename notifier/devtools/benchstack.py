"""The processes `notifier bench` starts and how it reads them: the stack, not the phases."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from notifier.devtools.devstack import DEV_APP_ID, DEV_APP_SECRET, Child, web_command
from notifier.devtools.measures import cpu_seconds, with_children
from notifier.devtools.measures import ok as _ok
from notifier.devtools.measures import wait as _wait
from notifier.devtools.redis_server import RedisServer, free_port
from notifier.processes import CAMPAIGN_WORKER, MESSAGE_WORKER, WORKERS, cpu_cores
from notifier.signature import new_secret


@dataclass(frozen=True)
class BenchConfig:
    """How much work each phase does."""

    messages: int = 10000
    recipients: int = 30000
    latency_ms: float = 50.0
    seconds: float = 5.0
    connections: int = 16
    # The Procfile's defaults (notifier/processes.py): threads per single-message worker,
    # greenlets per campaign worker, and one worker process per core for each queue.
    concurrency: int = MESSAGE_WORKER.concurrency
    campaign_concurrency: int = CAMPAIGN_WORKER.concurrency
    processes: int = field(default_factory=cpu_cores)
    probes: int = 100


class BenchStack:
    """Redis, the fake WeChat, gunicorn and the workers, started piece by piece."""

    def __init__(self, home: Path, config: BenchConfig, echo: Callable[[str], None]) -> None:
        self.config, self.echo = config, echo
        self.redis = RedisServer(home / "redis", appendonly=True)
        self.secret = new_secret()
        self.ports = {"web": free_port(), "wechat": free_port()}
        self.web = f"http://127.0.0.1:{self.ports['web']}"
        self.wechat = f"http://127.0.0.1:{self.ports['wechat']}"
        self.children: dict[str, Child] = {}
        self.results: dict[str, Any] = {}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "WECHAT_APP_ID": DEV_APP_ID,
            "WECHAT_APP_SECRET": DEV_APP_SECRET,
            "WECHAT_API_BASE": self.wechat,
            "WEBHOOK_SECRET": self.secret,
            "PYTHONUNBUFFERED": "1",
        }

    def spawn(self, name: str, args: list[str]) -> Child:
        child = Child(name, args)
        child.start(self.env(), lambda line: None)
        self.children[name] = child
        return child

    def start(self) -> None:
        self.redis.start()
        py = sys.executable
        self.spawn(
            "wechat",
            [
                py,
                "-m",
                "notifier.devtools.fake_wechat",
                "--port",
                str(self.ports["wechat"]),
                "--latency-ms",
                str(self.config.latency_ms),
            ],
        )
        self.spawn("web", web_command(self.ports["web"]))
        _wait(lambda: _ok(f"{self.wechat}/healthz") and _ok(f"{self.web}/healthz"), "web and fake")

    def worker(self, name: str, queue: str) -> None:
        """Start the workers of a queue; the drain is timed at the fake, so start-up is free."""
        for process in worker_names(name, self.config.processes):
            self.spawn(process, worker_command(self.config, process, queue))

    def stop(self) -> None:
        for child in reversed(self.children.values()):
            child.stop()
        self.redis.stop()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the web (gunicorn and its workers), the single-message
        workers, Redis and the fake."""

        def pids(prefix: str) -> list[int]:
            return [c.process.pid for n, c in self.children.items() if n.startswith(prefix)
                    and c.process is not None]  # fmt: skip

        redis_pid = self.redis.process.pid if self.redis.process else 0
        return {
            "web": cpu_seconds([p for pid in pids("web") for p in with_children(pid)]),
            "workers": cpu_seconds(pids("single")),
            "redis": cpu_seconds([redis_pid]),
            "wechat": cpu_seconds(pids("wechat")),
        }

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def delivered_count(self) -> int:
        return int(requests.get(f"{self.wechat}/_fake/stats", timeout=10).json()["delivered"])

    def arrivals(self, start: int, count: int) -> list[float]:
        def done() -> bool:
            for child in self.children.values():
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited: {''.join(child.lines[-20:])}")
            return self.delivered_count() >= start + count

        _wait(done, f"{count} deliveries", timeout=600)
        messages = requests.get(
            f"{self.wechat}/_fake/messages", params={"since": start}, timeout=60
        )
        return sorted(m["received_at"] for m in messages.json()["messages"][:count])


def worker_names(name: str, processes: int) -> list[str]:
    """The bench's names for a queue's worker processes (single, single2, ...), each its
    own Celery node name; cpu() finds the single-message workers by the prefix."""
    return [name if n == 0 else f"{name}{n + 1}" for n in range(processes)]


def worker_command(config: BenchConfig, name: str, queue: str) -> list[str]:
    """A bench worker: the Procfile's line for the queue, at the configured concurrency."""
    kind = WORKERS[queue]
    concurrency = config.campaign_concurrency if kind is CAMPAIGN_WORKER else config.concurrency
    return [sys.executable, "-m", "celery", "-A", "notifier.broker.app", "worker",
            *kind.args(concurrency), "--hostname", f"{name}@%h", "--loglevel", "WARNING",
            "--without-mingle", "--without-gossip"]  # fmt: skip
