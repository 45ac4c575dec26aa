"""`notifier bench`: the whole stack against a fake WeChat with latency, measured in one run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from notifier.broker.queues import MESSAGES_QUEUE
from notifier.client import NotifierClient, template_message
from notifier.devtools import wrkload
from notifier.devtools.benchstack import BenchConfig, BenchStack
from notifier.devtools.devstack import DEV_APP_ID, DEV_APP_SECRET
from notifier.devtools.measures import children_cpu_seconds as _children_cpu
from notifier.devtools.measures import machine
from notifier.devtools.measures import peak_mb as _peak_mb
from notifier.devtools.measures import peak_mb_pid as _peak_mb_pid
from notifier.devtools.measures import percentile as _pct
from notifier.devtools.measures import stored_bytes as _stored
from notifier.devtools.measures import wait as _wait

# A load generator's run: (URL, "trivial" or "signed", seconds) to requests, rate, errors, cpu.
Drive = Callable[[str, str, float], dict[str, float]]

# Signed and trivial runs, side by side; the median pair's ratio is the result. Single
# pairs ranged from 0.43 to 0.60 within one run on this project's 2-core VMs, so five.
INGEST_PAIRS = 5


class Bench(BenchStack):
    """Measures each phase from the fake WeChat's side."""

    _wrk_trivial_peak = 0.0  # req/s: the trivial side's best so far bounds the signed side

    # Phases ---------------------------------------------------------------------
    def fake_capacity(self) -> None:
        """The fake WeChat alone, so nobody mistakes it for the limit of what follows."""
        grant = {"grant_type": "client_credential", "appid": DEV_APP_ID, "secret": DEV_APP_SECRET}
        token = requests.post(f"{self.wechat}/cgi-bin/stable_token", json=grant, timeout=5).json()
        url = f"{self.wechat}/cgi-bin/message/template/send?access_token={token['access_token']}"
        rate = self._load(url, ["--wechat", "--connections", "256"])["rate"]
        self.results["fake_sends_per_s"] = rate
        self.echo(f"fake WeChat alone: {rate:.0f} sends/s with 256 connections")

    def _load(self, url: str, extra: list[str], seconds: float | None = None) -> dict[str, float]:
        """Run the load generator: its requests, rate and the CPU seconds it used itself."""
        args = [
            sys.executable,
            "-m",
            "notifier.devtools.loadgen",
            url,
            "--seconds",
            str(seconds or self.config.seconds),
        ]
        before = _children_cpu()
        out = subprocess.run([*args, *extra], capture_output=True, text=True, check=True)
        result: dict[str, float] = json.loads(out.stdout)
        return {**result, "cpu": _children_cpu() - before}

    def ingest(self) -> None:
        """Signed intake against a trivial endpoint of the same server, in adjacent pairs:
        driven by the bundled Python generator, then by wrk where it is installed.

        The machine's speed drifts within seconds, so each signed run is compared with
        the trivial run beside it, in alternating order, and the median pair is reported.
        The CPU each side spends per request is summed over the measured runs: the load
        generator shares the cores, and its cost, nearly the same for both kinds, pulls
        the rate ratio towards 1; much less so with wrk. The server's own CPU ratio is free
        of that.
        """
        self._ingest_pairs("ingest", self._bundled_run)
        why = wrkload.unavailable(self.config.seconds)
        if why is not None:
            self.results["ingest_wrk_skipped"] = why
            self.echo(f"ingest-wrk: skipped, {why}")
            return
        self._ingest_pairs("ingest_wrk", self._wrk_run)

    def _ingest_pairs(self, prefix: str, drive: Drive) -> None:
        """Five alternating pairs of runs of one load generator, after a warm-up pair."""
        for kind in ("trivial", "signed"):  # unmeasured: the first requests warm up each thread
            self._ingest_run(drive, kind, seconds=min(1.0, self.config.seconds))
        spent: dict[str, dict[str, float]] = {"trivial": {}, "signed": {}}
        pairs: list[tuple[float, float]] = []
        for n in range(INGEST_PAIRS):
            order = ("trivial", "signed") if n % 2 == 0 else ("signed", "trivial")
            rates = {kind: self._ingest_run(drive, kind, spent=spent[kind]) for kind in order}
            pairs.append((rates["signed"], rates["trivial"]))
        self._ingest_rates(prefix, pairs)
        self._ingest_cpu(spent, prefix)
        failed = sum(used.get("errors", 0) for used in spent.values())
        if failed:
            self.results[f"{prefix}_errors"] = failed
            self.echo(f"{_name(prefix)}: {failed:.0f} requests failed or were refused")

    def _ingest_rates(self, prefix: str, pairs: list[tuple[float, float]]) -> None:
        """Each pair's signed ÷ trivial, and the rates of the median pair."""
        signed, trivial = median_pair(pairs)
        self.results.update({f"{prefix}_pair_ratios": [s / t for s, t in pairs],
                             f"{prefix}_trivial_rps": trivial, f"{prefix}_signed_rps": signed,
                             f"{prefix}_ratio": signed / trivial})  # fmt: skip
        ratios = ", ".join(f"{s / t:.2f}" for s, t in pairs)
        self.echo(f"{_name(prefix)}: signed {signed:.0f} req/s, trivial {trivial:.0f} req/s "
                  f"(median of pairs {ratios})")  # fmt: skip

    def _ingest_cpu(self, spent: dict[str, dict[str, float]], prefix: str = "ingest") -> None:
        """Each side's CPU per request of each kind, and the server's trivial ÷ signed."""
        server_us = {}
        for kind, used in spent.items():
            each = {
                part: used[part] * 1e6 / max(used["requests"], 1)
                for part in ("web", "redis", "load")
            }
            self.results.update({f"{prefix}_{kind}_{part}_us": us for part, us in each.items()})
            server_us[kind] = each["web"] + each["redis"]
        ratio = server_us["trivial"] / max(server_us["signed"], 1e-9)
        self.results[f"{prefix}_server_cpu_ratio"] = ratio
        self.echo(f"{_name(prefix)}: web and Redis CPU per request, {server_us['signed']:.0f} µs "
                  f"signed and {server_us['trivial']:.0f} µs trivial ({ratio:.2f})")  # fmt: skip

    def _ingest_run(
        self,
        drive: Drive,
        kind: str,
        seconds: float | None = None,
        spent: dict[str, float] | None = None,
    ) -> float:
        """One run of a kind; adds its requests, errors and each side's CPU seconds to `spent`."""
        url = f"{self.web}/healthz" if kind == "trivial" else f"{self.web}/v1/messages"
        before = self.cpu()
        load = drive(url, kind, seconds or self.config.seconds)
        after = self.cpu()
        if spent is not None:
            used = {part: after[part] - before[part] for part in ("web", "redis")}
            used.update(requests=load["requests"], load=load["cpu"], errors=load["errors"])
            for part, amount in used.items():
                spent[part] = spent.get(part, 0.0) + amount
        if kind == "signed":
            # Nothing consumes the load's messages. Left queued, their task envelopes (about
            # 1.1 KB each) grew the dataset, and rewriting that AOF slowed the next runs.
            self.client().delete(MESSAGES_QUEUE)
        return load["rate"]

    def _bundled_run(self, url: str, kind: str, seconds: float) -> dict[str, float]:
        extra = ["--connections", str(self.config.connections)]
        if kind == "signed":
            extra += ["--signed", self.secret]
        return self._load(url, extra, seconds)

    def _wrk_run(self, url: str, kind: str, seconds: float) -> dict[str, float]:
        """wrk, its signed runs with enough unique requests: more than the trivial side's best."""
        count = wrkload.requests_needed(self._wrk_trivial_peak, seconds)
        secret = self.secret if kind == "signed" else None
        before = _children_cpu()
        result = wrkload.run(url, seconds, self.config.connections, secret, count)
        result["cpu"] = _children_cpu() - before
        if kind == "trivial":
            self._wrk_trivial_peak = max(self._wrk_trivial_peak, result["rate"])
        if result["reused"]:  # not expected: the count has a wide margin
            raise RuntimeError(f"wrk ran out of unique webhook-ids: {result}")
        return result

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
        start = self.delivered_count()
        self.worker("single", "notifier.messages")
        # CPU per message over the middle of the drain, once every worker has started:
        # a steadier measure of the work per message than a rate on a shared machine.
        _wait(lambda: self.delivered_count() >= start + len(ids) // 5, "the drain to be under way")
        before = self.delivered_count(), self.cpu()
        arrivals = self.arrivals(start, len(ids))
        after = self.delivered_count(), self.cpu()
        rate = len(ids) / max(arrivals[-1] - arrivals[0], 1e-6)
        counted = max(after[0] - before[0], 1)
        for part in ("workers", "redis", "wechat"):
            cpu_ms = (after[1][part] - before[1][part]) * 1000 / counted
            self.results[f"single_cpu_ms_{part}"] = cpu_ms
        self.results["single_delivered_per_s"] = rate
        self.echo(f"single: {len(ids)} messages at {rate:.0f}/s")

    def campaigns(self) -> None:
        """Queue a campaign with no campaign worker, weigh it in Redis, then time the drain."""
        client = self.client()
        before = _stored(client)
        count = self._post_campaign(self.config.recipients, "Campaign")
        per_recipient = (_stored(client) - before) / count
        start = self.delivered_count()
        self.worker("campaigns", "notifier.campaigns")
        arrivals = self.arrivals(start, count)
        rate = count / max(arrivals[-1] - arrivals[0], 1e-6)
        self.results.update(campaign_delivered_per_s=rate, redis_bytes_per_recipient=per_recipient)
        self.echo(
            f"campaigns: {count} recipients at {rate:.0f}/s, {per_recipient:.0f} B each queued"
        )

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
        self.results["machine"] = machine(self.client())

    # Helpers --------------------------------------------------------------------
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


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """The (signed, trivial) pair whose ratio is the median: an odd count has one."""
    return sorted(pairs, key=lambda pair: pair[0] / pair[1])[len(pairs) // 2]


def _name(prefix: str) -> str:
    return prefix.replace("_", "-")


# The phases, in the order a full run takes them.
PHASES = ("fake", "ingest", "single", "campaigns", "latency")


def run(
    home: Path,
    config: BenchConfig,
    echo: Callable[[str], None] = print,
    phases: tuple[str, ...] = PHASES,
) -> dict[str, Any]:
    """Run the phases (every one by default) on one machine, in one go; return the results."""
    bench = Bench(home, config, echo)
    steps = {"fake": bench.fake_capacity, "ingest": bench.ingest, "single": bench.single,
             "campaigns": bench.campaigns, "latency": bench.latency}  # fmt: skip
    try:
        bench.start()
        bench.machine()
        for phase in PHASES:
            if phase in phases:
                steps[phase]()
        bench.memory()
    finally:
        bench.stop()
    return bench.results
