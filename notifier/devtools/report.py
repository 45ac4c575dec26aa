"""The benchmark results as the table the README carries, each beside its target."""

from __future__ import annotations

from typing import Any

from notifier.devtools import wrkload
from notifier.devtools.benchstack import BenchConfig

# (key, label, format, target, True when higher is better)
ROWS = [
    ("fake_sends_per_s", "fake WeChat alone, sends/s (256 connections)", "{:.0f}", None, True),
    # Driven by the bundled Python generator, whose own CPU pulls the ratio towards 1.
    ("ingest_signed_rps", "signed ingest, requests/s", "{:.0f}", None, True),
    ("ingest_trivial_rps", "trivial endpoint, same server, requests/s", "{:.0f}", None, True),
    ("ingest_ratio", "ingest ÷ trivial, bundled generator", "{:.2f}", None, True),
    ("ingest_pair_ratios", "ingest ÷ trivial, bundled generator, each pair", "{:.2f}", None, True),
    ("ingest_trivial_web_us", "CPU µs per trivial request: web", "{:.0f}", None, False),
    ("ingest_signed_web_us", "CPU µs per signed request: web", "{:.0f}", None, False),
    ("ingest_signed_redis_us", "CPU µs per signed request: Redis", "{:.0f}", None, False),
    ("ingest_trivial_load_us", "CPU µs per trivial request: load generator", "{:.0f}", None, False),
    ("ingest_signed_load_us", "CPU µs per signed request: load generator", "{:.0f}", None, False),
    ("ingest_server_cpu_ratio", "web and Redis CPU, trivial ÷ signed", "{:.2f}", None, True),
    # Driven by wrk: the target's measure.
    ("ingest_wrk_signed_rps", "signed ingest with wrk, requests/s", "{:.0f}", None, True),
    ("ingest_wrk_trivial_rps", "trivial endpoint with wrk, requests/s", "{:.0f}", None, True),
    ("ingest_wrk_ratio", "ingest ÷ trivial with wrk, median pair", "{:.2f}", 0.4, True),
    ("ingest_wrk_pair_ratios", "ingest ÷ trivial with wrk, each pair", "{:.2f}", None, True),
    ("ingest_wrk_trivial_load_us", "CPU µs per trivial request: wrk", "{:.0f}", None, False),
    ("ingest_wrk_signed_load_us", "CPU µs per signed request: wrk", "{:.0f}", None, False),
    (
        "ingest_wrk_server_cpu_ratio",
        "web and Redis CPU with wrk, trivial ÷ signed",
        "{:.2f}",
        None,
        True,
    ),
    ("single_delivered_per_s", "single messages delivered/s", "{:.0f}", 1000, True),
    ("single_cpu_ms_workers", "CPU ms per single message: workers", "{:.2f}", None, False),
    ("single_cpu_ms_redis", "CPU ms per single message: Redis", "{:.2f}", None, False),
    ("single_cpu_ms_wechat", "CPU ms per single message: fake WeChat", "{:.2f}", None, False),
    ("campaign_delivered_per_s", "campaign recipients delivered/s", "{:.0f}", 2000, True),
    ("redis_bytes_per_recipient", "Redis bytes per queued recipient", "{:.0f}", 100, False),
    ("single_p50_s", "single message during a campaign, p50 s", "{:.3f}", None, False),
    ("single_p99_s", "single message during a campaign, p99 s", "{:.3f}", 1.0, False),
]


def table(results: dict[str, Any], config: BenchConfig) -> str:
    """Format the results; each row says whether it meets its target."""
    lines = ["| measure | result | target | met |", "|---|---|---|---|"]
    for key, label, fmt, target, higher in ROWS:
        value = results.get(key)
        shown = _show(fmt, value)
        if target is None or value is None:
            lines.append(f"| {label} | {shown} | | |")
            continue
        met = value >= target if higher else value <= target
        bound = "≥" if higher else "≤"
        lines.append(f"| {label} | {shown} | {bound} {target} | {'yes' if met else 'no'} |")
    peaks = results.get("peak_rss_mb", {})
    lines.append(
        "| peak memory, MB | " + ", ".join(f"{k} {v}" for k, v in peaks.items()) + " | | |"
    )
    machine = results.get("machine", {})
    lines.append("")
    if "ingest_wrk_skipped" in results:
        lines.append(f"The wrk measure was skipped: {results['ingest_wrk_skipped']}.")
    for prefix in ("ingest", "ingest_wrk"):
        if results.get(f"{prefix}_errors"):
            lines.append(f"{prefix}: {results[f'{prefix}_errors']:.0f} requests failed or refused.")
    lines.append(
        f"Machine: {machine.get('cores')} cores, Python {machine.get('python')}, "
        f"Redis {machine.get('redis')}, {machine.get('platform')}. Fake WeChat latency "
        f"{config.latency_ms:g} ms; {config.messages} single messages, {config.recipients} "
        f"campaign recipients, {config.processes} worker processes per queue: "
        f"{config.concurrency} threads each for single messages, "
        f"{config.campaign_concurrency} greenlets each for campaigns. Ingest: five pairs of "
        f"{config.seconds:g} s runs, {config.connections} connections (wrk: "
        f"{min(wrkload.THREADS, config.connections)} threads, whole seconds)."
    )
    return "\n".join(lines)


def _show(fmt: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(fmt.format(each) for each in value)
    return fmt.format(value)
