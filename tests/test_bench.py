"""The benchmark's arithmetic: CPU per request from what each side spent over its runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.bench import Bench
from notifier.benchstack import BenchConfig
from notifier.report import table


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
