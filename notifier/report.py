"""The benchmark results as the table the README carries, each beside its target."""

from __future__ import annotations

from typing import Any

from notifier.benchstack import BenchConfig

# (key, label, format, target, True when higher is better)
ROWS = [
    ("fake_sends_per_s", "fake WeChat alone, sends/s (256 connections)", "{:.0f}", None, True),
    ("ingest_signed_rps", "signed ingest, requests/s", "{:.0f}", None, True),
    ("ingest_trivial_rps", "trivial endpoint, same server, requests/s", "{:.0f}", None, True),
    ("ingest_ratio", "ingest ÷ trivial", "{:.2f}", 0.5, True),
    ("ingest_trivial_web_us", "CPU µs per trivial request: web", "{:.0f}", None, False),
    ("ingest_signed_web_us", "CPU µs per signed request: web", "{:.0f}", None, False),
    ("ingest_signed_redis_us", "CPU µs per signed request: Redis", "{:.0f}", None, False),
    ("ingest_trivial_load_us", "CPU µs per trivial request: load generator", "{:.0f}", None, False),
    ("ingest_signed_load_us", "CPU µs per signed request: load generator", "{:.0f}", None, False),
    ("ingest_server_cpu_ratio", "web and Redis CPU, trivial ÷ signed", "{:.2f}", None, True),
    ("single_delivered_per_s", "single messages delivered/s", "{:.0f}", 1000, True),
    ("single_cpu_ms_workers", "CPU ms per single message: workers", "{:.2f}", None, False),
    ("single_cpu_ms_redis", "CPU ms per single message: Redis", "{:.2f}", None, False),
    ("single_cpu_ms_wechat", "CPU ms per single message: fake WeChat", "{:.2f}", None, False),
    ("bulk_delivered_per_s", "campaign recipients delivered/s", "{:.0f}", 2000, True),
    ("redis_bytes_per_recipient", "Redis bytes per queued recipient", "{:.0f}", 100, False),
    ("single_p50_s", "single message during a campaign, p50 s", "{:.3f}", None, False),
    ("single_p99_s", "single message during a campaign, p99 s", "{:.3f}", 1.0, False),
]


def table(results: dict[str, Any], config: BenchConfig) -> str:
    """Format the results; each row says whether it meets its target."""
    lines = ["| measure | result | target | met |", "|---|---|---|---|"]
    for key, label, fmt, target, higher in ROWS:
        value = results.get(key)
        shown = fmt.format(value) if value is not None else "—"
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
    lines.append(
        f"Machine: {machine.get('cores')} cores, Python {machine.get('python')}, "
        f"Redis {machine.get('redis')}, {machine.get('platform')}. Fake WeChat latency "
        f"{config.latency_ms:g} ms; {config.messages} single messages, {config.recipients} "
        f"campaign recipients, {config.processes} worker processes per queue: "
        f"{config.concurrency} threads each for single messages, "
        f"{config.bulk_concurrency} greenlets each for campaigns."
    )
    return "\n".join(lines)
