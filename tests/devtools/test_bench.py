"""The benchmark's arithmetic: CPU per request from what each side spent over its runs, and the
median of the ingest pairs, for the bundled generator and for wrk."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.devtools import wrkload
from notifier.devtools.bench import Bench, median_pair
from notifier.devtools.benchstack import BenchConfig
from notifier.devtools.report import table


def test_ingest_cpu_is_per_request_and_the_server_ratio_leaves_out_the_load(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    bench = Bench(tmp_path, BenchConfig(), lines.append)
    spent = {
        "trivial": {"requests": 20_000, "web": 6.0, "redis": 0.2, "load": 3.0},
        "signed": {"requests": 10_000, "web": 6.0, "redis": 0.8, "load": 1.8},
    }

    bench._ingest_cpu(spent)

    results = bench.results
    assert results["ingest_trivial_web_us"] == pytest.approx(300)
    assert results["ingest_trivial_load_us"] == pytest.approx(150)
    assert results["ingest_signed_web_us"] == pytest.approx(600)
    assert results["ingest_signed_redis_us"] == pytest.approx(80)
    assert results["ingest_signed_load_us"] == pytest.approx(180)
    # (300 + 10) / (600 + 80): web and Redis only, as a load generator costing nothing would see.
    assert results["ingest_server_cpu_ratio"] == pytest.approx(310 / 680)
    assert "680 µs signed" in lines[-1] and "310 µs trivial" in lines[-1]
    shown = table(results, BenchConfig())
    assert "| web and Redis CPU, trivial ÷ signed | 0.46 | | |" in shown
    assert "| CPU µs per signed request: load generator | 180 | | |" in shown


def test_the_median_pair_is_the_one_with_the_median_ratio() -> None:
    pairs = [(500.0, 1000.0), (300.0, 1000.0), (900.0, 2000.0), (400.0, 1000.0), (800.0, 1000.0)]
    # Ratios 0.50, 0.30, 0.45, 0.40, 0.80: the median is 0.45, the pair (900, 2000).
    assert median_pair(pairs) == (900.0, 2000.0)


def test_each_measure_reports_its_pairs_median_rates_and_cpu_under_its_own_name(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    bench = Bench(tmp_path, BenchConfig(), lines.append)
    pairs = [
        (2000.0, 4000.0),
        (1800.0, 4000.0),
        (2100.0, 5000.0),
        (1700.0, 4000.0),
        (1900.0, 4000.0),
    ]
    spent = {
        "trivial": {"requests": 40_000, "web": 12.0, "redis": 0.4, "load": 1.2},
        "signed": {"requests": 20_000, "web": 13.0, "redis": 1.6, "load": 0.8},
    }

    bench._ingest_rates("ingest_wrk", pairs)
    bench._ingest_cpu(spent, "ingest_wrk")

    results = bench.results
    assert results["ingest_wrk_pair_ratios"] == pytest.approx([0.5, 0.45, 0.42, 0.425, 0.475])
    assert results["ingest_wrk_ratio"] == pytest.approx(0.45)
    assert (results["ingest_wrk_signed_rps"], results["ingest_wrk_trivial_rps"]) == (1800, 4000)
    assert results["ingest_wrk_signed_load_us"] == pytest.approx(40)
    assert results["ingest_wrk_server_cpu_ratio"] == pytest.approx(310 / 730)
    assert "ingest_ratio" not in results  # the bundled generator's keys are its own
    assert lines[0].startswith("ingest-wrk: signed 1800 req/s, trivial 4000 req/s")
    assert "0.50, 0.45, 0.42, 0.42, 0.47" in lines[0]
    shown = table(results, BenchConfig())
    assert "| ingest ÷ trivial with wrk, median pair | 0.45 | ≥ 0.4 | yes |" in shown
    assert "| ingest ÷ trivial with wrk, each pair | 0.50, 0.45, 0.42, 0.42, 0.47 | | |" in shown
    assert "| CPU µs per signed request: wrk | 40 | | |" in shown
    assert "| web and Redis CPU with wrk, trivial ÷ signed | 0.42 | | |" in shown


def test_without_wrk_the_ingest_phase_says_so_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(wrkload.ENV, "")
    lines: list[str] = []
    bench = Bench(tmp_path, BenchConfig(), lines.append)
    measured: list[str] = []
    monkeypatch.setattr(bench, "_ingest_pairs", lambda prefix, drive: measured.append(prefix))

    bench.ingest()

    assert measured == ["ingest"]
    assert "wrk is not on PATH" in bench.results["ingest_wrk_skipped"]
    assert lines[-1].startswith("ingest-wrk: skipped, wrk is not on PATH")
    shown = table(bench.results, BenchConfig())
    assert "| ingest ÷ trivial with wrk, median pair | — | | |" in shown
    assert "The wrk measure was skipped: wrk is not on PATH" in shown
