"""The monitoring profile: compose starts Prometheus and Grafana on files that exist and agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.web.test_metrics import NAMES

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_the_monitoring_profile_mounts_files_of_the_repository() -> None:
    services = load(ROOT / "docker-compose.yml")["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
    # Without the profile, nothing new starts.
    assert all(
        "profiles" not in s for n, s in services.items() if n not in ("prometheus", "grafana")
    )


def test_prometheus_scrapes_the_webs_metrics() -> None:
    [job] = load(MONITORING / "prometheus.yml")["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["web:8000"]


def test_the_dashboard_queries_only_metrics_the_endpoint_serves() -> None:
    dashboard = json.loads((MONITORING / "grafana/dashboards/notifier.json").read_text())
    [source] = load(MONITORING / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {re.sub(r"_(total|bucket)$", "", name) for e in exprs for name in re.findall(r"notifier_\w+", e)}  # fmt: skip
    assert used <= NAMES
    # The dashboard shows rates, latency, queues, error codes, the breaker and the quota.
    assert {"notifier_messages_accepted", "notifier_send_latency_seconds", "notifier_queue_depth",
            "notifier_messages_failed", "notifier_circuit_open", "notifier_quota_paused"} <= used  # fmt: skip
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}
    [provider] = load(MONITORING / "grafana/provisioning/dashboards/notifier.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
