"""`notifier bench`: the whole stack against a fake WeChat with latency, measured in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests

from notifier.client import NotifierClient, template_message
from notifier.devstack import DEV_APP_ID, DEV_APP_SECRET, Child
from notifier.measures import machine
from notifier.measures import ok as _ok
from notifier.measures import peak_mb as _peak_mb
from notifier.measures import peak_mb_pid as _peak_mb_pid
from notifier.measures import percentile as _pct
from notifier.measures import wait as _wait
from notifier.redis_server import RedisServer, free_port
from notifier.signature import new_secret


@dataclass(frozen=True)
class BenchConfig:
    """How much work each phase does."""

    messages: int = 10000
    recipients: int = 30000
    latency_ms: float = 50.0
    seconds: float = 5.0
    connections: int = 16
    # Several processes of fewer threads: each worker process has one consumer loop,
    # which tops out at a few hundred messages a second on this kind of machine.
    concurrency: int = 16
    # Campaign workers run gevent, as the Procfile's do: many sends in flight, little CPU.
    bulk_concurrency: int = 100
    processes: int = 4
    probes: int = 100


class Bench:
    """Starts the stack piece by piece and measures each phase from the fake WeChat's side."""

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
                "notifier.fake_wechat",
                "--port",
                str(self.ports["wechat"]),
                "--latency-ms",
                str(self.config.latency_ms),
            ],
        )
        self.spawn(
            "web",
            [
                py,
                "-m",
                "gunicorn",
                "wsgi:app",
                "--bind",
                f"127.0.0.1:{self.ports['web']}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "8",
            ],
        )
        _wait(lambda: _ok(f"{self.wechat}/healthz") and _ok(f"{self.web}/healthz"), "web and fake")

    def worker(self, name: str, queue: str) -> None:
        """Start the workers of a queue; the drain is timed at the fake, so start-up is free."""
        for n in range(self.config.processes):
            self._worker_process(name if n == 0 else f"{name}{n + 1}", queue)

    def _worker_process(self, name: str, queue: str) -> None:
        # The pools the Procfile gives each queue.
        if queue == "notifier.campaigns":
            pool = ["--pool", "gevent", "--concurrency", str(self.config.bulk_concurrency)]
            pool += ["--prefetch-multiplier", "1"]
        else:
            pool = ["--pool", "threads", "--concurrency", str(self.config.concurrency)]
        self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "notifier.celery_app",
                "worker",
                *pool,
                "--queues",
                queue,
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
            ],
        )

    def stop(self) -> None:
        for child in reversed(self.children.values()):
            child.stop()
        self.redis.stop()

    # Phases ---------------------------------------------------------------------
    def fake_capacity(self) -> None:
        """The fake WeChat alone, so nobody mistakes it for the limit of what follows."""
        grant = {"grant_type": "client_credential", "appid": DEV_APP_ID, "secret": DEV_APP_SECRET}
        token = requests.post(f"{self.wechat}/cgi-bin/stable_token", json=grant, timeout=5).json()
        url = f"{self.wechat}/cgi-bin/message/template/send?access_token={token['access_token']}"
        rate = self._load(url, ["--wechat", "--connections", "256"])
        self.results["fake_sends_per_s"] = rate
        self.echo(f"fake WeChat alone: {rate:.0f} sends/s with 256 connections")

    def _load(self, url: str, extra: list[str]) -> float:
        args = [
            sys.executable,
            "-m",
            "notifier.loadgen",
            url,
            "--seconds",
            str(self.config.seconds),
        ]
        out = subprocess.run([*args, *extra], capture_output=True, text=True, check=True)
        return float(json.loads(out.stdout)["rate"])

    def ingest(self) -> None:
        """Signed intake against a trivial endpoint of the same server, in alternation."""
        rates: dict[str, list[float]] = {"trivial": [], "signed": []}
        for kind in ("trivial", "signed", "trivial", "signed"):
            url = f"{self.web}/healthz" if kind == "trivial" else f"{self.web}/v1/messages"
            extra = ["--connections", str(self.config.connections)]
            if kind == "signed":
                extra += ["--signed", self.secret]
            rates[kind].append(self._load(url, extra))
        trivial, signed = max(rates["trivial"]), max(rates["signed"])
        self.results.update(
            ingest_trivial_rps=trivial, ingest_signed_rps=signed, ingest_ratio=signed / trivial
        )
        self._redis().delete("notifier.messages")  # the load's messages are not the benchmark's
        self.echo(f"ingest: signed {signed:.0f} req/s, trivial {trivial:.0f} req/s")

    def single(self) -> None:
        """Queue messages with no worker running, then time the drain at the fake."""
        client = NotifierClient(self.web, self.secret)
        message = template_message("oBenchSingle0001", "TPL_BENCH", {"thing1": "x"})
        with ThreadPoolExecutor(16) as pool:
            ids = list(
                pool.map(
                    lambda _: client.post_message(message).json()["id"], range(self.config.messages)
                )
            )
        start = self._delivered_count()
        self.worker("single", "notifier.messages")
        arrivals = self._arrivals(start, len(ids))
        rate = len(ids) / max(arrivals[-1] - arrivals[0], 1e-6)
        self.results["single_delivered_per_s"] = rate
        self.echo(f"single: {len(ids)} messages at {rate:.0f}/s")

    def bulk(self) -> None:
        """Queue a campaign with no bulk worker, weigh it in Redis, then time the drain."""
        client = self._redis()
        before = int(client.info("memory")["used_memory"])
        count = self._post_campaign(self.config.recipients, "Bulk")
        per_recipient = (int(client.info("memory")["used_memory"]) - before) / count
        start = self._delivered_count()
        self.worker("bulk", "notifier.campaigns")
        arrivals = self._arrivals(start, count)
        rate = count / max(arrivals[-1] - arrivals[0], 1e-6)
        self.results.update(bulk_delivered_per_s=rate, redis_bytes_per_recipient=per_recipient)
        self.echo(f"bulk: {count} recipients at {rate:.0f}/s, {per_recipient:.0f} B each queued")

    def latency(self) -> None:
        """Single messages sent while a campaign drains: 202 to arrival at WeChat."""
        self._post_campaign(self.config.recipients, "Drain")
        client = NotifierClient(self.web, self.secret)
        sent: dict[str, float] = {}
        for i in range(self.config.probes):
            message = template_message(f"oProbe{i:08d}", "TPL_PROBE", {"thing1": "probe"})
            response = client.post_message(message)
            sent[response.json()["id"]] = time.time()
            time.sleep(0.05)
        arrived: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while len(arrived) < len(sent) and time.monotonic() < deadline:
            for m in requests.get(f"{self.wechat}/_fake/messages", timeout=30).json()["messages"]:
                if m["client_msg_id"] in sent:
                    arrived[m["client_msg_id"]] = m["received_at"]
            time.sleep(0.5)
        delays = sorted(arrived[i] - sent[i] for i in arrived)
        self.results.update(single_p50_s=_pct(delays, 50), single_p99_s=_pct(delays, 99))
        self.echo(
            f"latency during a campaign: p50 {_pct(delays, 50):.3f}s p99 {_pct(delays, 99):.3f}s"
        )

    def memory(self) -> None:
        """Peak resident memory of each process (its children included, e.g. gunicorn's)."""
        peaks = {name: _peak_mb(c) for name, c in self.children.items()}
        peaks["redis"] = _peak_mb_pid(self.redis.process.pid if self.redis.process else 0)
        self.results["peak_rss_mb"] = peaks

    def machine(self) -> None:
        self.results["machine"] = machine(self._redis())

    # Helpers --------------------------------------------------------------------
    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def _post_campaign(self, count: int, prefix: str) -> int:
        client = NotifierClient(self.web, self.secret)
        for start in range(0, count, 10_000):
            people = [
                {"touser": f"o{prefix}{i:010d}"} for i in range(start, min(count, start + 10_000))
            ]
            batch = {
                "template_id": "TPL_BULK",
                "data": {"thing1": {"value": "sale"}},
                "recipients": people,
            }
            client.post_batch(batch, webhook_id=f"b_{prefix}_{start}").raise_for_status()
        return count

    def _delivered_count(self) -> int:
        return int(requests.get(f"{self.wechat}/_fake/stats", timeout=10).json()["delivered"])

    def _arrivals(self, start: int, count: int) -> list[float]:
        def done() -> bool:
            for child in self.children.values():
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited: {''.join(child.lines[-20:])}")
            return self._delivered_count() >= start + count

        _wait(done, f"{count} deliveries", timeout=600)
        messages = requests.get(
            f"{self.wechat}/_fake/messages", params={"since": start}, timeout=60
        )
        return sorted(m["received_at"] for m in messages.json()["messages"][:count])


def run(home: Path, config: BenchConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every phase on one machine, in one go, and return the results."""
    bench = Bench(home, config, echo)
    try:
        bench.start()
        bench.machine()
        bench.fake_capacity()
        bench.ingest()
        bench.single()
        bench.bulk()
        bench.latency()
        bench.memory()
    finally:
        bench.stop()
    return bench.results
