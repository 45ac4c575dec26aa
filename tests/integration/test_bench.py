"""A smoke run of `notifier bench`: tiny counts, checking only that it completes and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.cli.devcommands import bench as bench_command
from notifier.devtools import wrkload
from notifier.devtools.bench import PHASES


@pytest.mark.long
def test_the_benchmark_runs_end_to_end_and_reports_every_measure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "bench", "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for key in (
        "fake_sends_per_s",
        "ingest_signed_rps",
        "ingest_trivial_rps",
        "ingest_ratio",
        "single_delivered_per_s",
        "campaign_delivered_per_s",
        "single_p50_s",
        "single_p99_s",
    ):
        assert report[key] > 0, key
    # Thirty messages may take less CPU than the clock's tick: only check these report.
    for part in ("workers", "redis", "wechat"):
        assert report[f"single_cpu_ms_{part}"] >= 0, part
    for kind in ("trivial", "signed"):
        for part in ("web", "redis", "load"):
            assert report[f"ingest_{kind}_{part}_us"] >= 0, (kind, part)
    assert report["ingest_server_cpu_ratio"] >= 0
    assert len(report["ingest_pair_ratios"]) == 5
    if wrkload.binary() is None:  # not on every machine: the run says so and goes on
        assert "wrk" in report["ingest_wrk_skipped"]
    else:
        assert report["ingest_wrk_ratio"] > 0 and len(report["ingest_wrk_pair_ratios"]) == 5
        assert report["ingest_wrk_signed_rps"] > 0 and report["ingest_wrk_trivial_rps"] > 0
        assert report["ingest_wrk_server_cpu_ratio"] >= 0
    # With 250 recipients, Redis's own bookkeeping can outweigh them: only check it reports.
    assert isinstance(report["redis_bytes_per_recipient"], int | float)
    assert {"web", "wechat", "single", "campaigns", "redis"} <= set(report["peak_rss_mb"])
    assert report["machine"]["cores"] >= 1


def test_one_phase_runs_alone_and_the_cli_offers_every_phase() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "bench", "--smoke", "--json", "--phase", "single"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["single_delivered_per_s"] > 0
    assert "campaign_delivered_per_s" not in report and "ingest_ratio" not in report
    option = next(p for p in bench_command.params if p.name == "phases")
    assert tuple(option.type.choices) == PHASES  # type: ignore[attr-defined]


def test_without_wrk_the_ingest_phase_still_runs_and_says_it_skipped_wrk() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "bench", "--smoke", "--phase", "ingest"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, wrkload.ENV: ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ingest-wrk: skipped, wrk is not on PATH" in result.stderr
    assert "The wrk measure was skipped: wrk is not on PATH" in result.stdout
    assert "| ingest ÷ trivial, bundled generator | 0." in result.stdout


def test_the_memory_measure_runs_and_reports_each_key() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "memory.py"
    result = subprocess.run(
        [sys.executable, str(script), "200"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for label in ("task envelope", "while queued", "once sent", "msgid", "idempotency key"):
        assert label in result.stdout, label


def test_the_redis_call_measure_runs_and_reports_each_call() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "redis_calls.py"
    result = subprocess.run(
        [sys.executable, str(script), "200"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for key in ("get_us", "evalsha_us", "pipeline_of_two_us"):
        assert report[key] > 0, key
