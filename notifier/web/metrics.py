"""GET /metrics: the whole fleet's counters, read from Redis at scrape time, in Prometheus text.

The counts live in Redis (notifier/store/metrics.py), so every gunicorn process answers
for every web process and worker. The web counts one thing itself: intake requests it
refuses, which no script records. Those are kept in the process until Redis takes them,
so a refusal because Redis was away is counted once Redis is back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.errors import (
    BAD_ANSWER_ERRCODE,
    ERRCODE_CLASSES,
    HTTP_ERRCODE,
    NETWORK_ERRCODE,
    UNEXPECTED_ERRCODE,
)
from notifier.store.metrics import MetricsStore, Snapshot
from notifier.web.auth import BearerTokens
from notifier.web.context import web_context
from notifier.web.problems import problem

bp = Blueprint("metrics", __name__)

# The intake views whose refusals are counted, and each refusal's reason by status code:
# a fixed set, so the label's values are bounded.
INTAKE = frozenset({"intake.create_message", "campaigns.create_campaign"})
REASONS = {400: "invalid", 401: "signature", 409: "conflict", 413: "too_large",
           415: "media_type", 500: "error", 503: "unavailable"}  # fmt: skip
# errcode labels: WeChat's classified codes and our own; any other code is `other`.
KNOWN_ERRCODES = frozenset({*ERRCODE_CLASSES, NETWORK_ERRCODE, HTTP_ERRCODE, BAD_ANSWER_ERRCODE,
                            UNEXPECTED_ERRCODE})  # fmt: skip
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# Seconds between a process's writes of the refusals it counted (a scrape writes them too).
FLUSH_EVERY = 1.0
_EXTENSION = "notifier.metrics"


class Refusals:
    """Refusals this process counted and Redis has not yet taken (it may have been away)."""

    def __init__(self, store: MetricsStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._flush_at = 0.0

    def add(self, reason: str, flush: bool) -> None:
        """Count one refusal; hand the counts to Redis at most once a second, and not when
        Redis is known to be away (`flush` false): a flood of bad requests costs no more."""
        now = time.monotonic()
        with self._lock:
            self._pending[f"refused:{reason}"] += 1
            due = flush and now >= self._flush_at
            if due:
                self._flush_at = now + FLUSH_EVERY
        if due:
            self.flush()

    def flush(self) -> None:
        """Hand the pending counts to Redis; keep them if it does not take them."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            self._store.add(pending)
        except redis.RedisError:
            with self._lock:
                self._pending.update(pending)


class FleetCollector(Collector):
    """Builds every metric family from one read of Redis, at each scrape."""

    def __init__(self, store: MetricsStore, account: str) -> None:
        self._store = store
        self._account = account

    def collect(self) -> Iterator[Metric]:
        snap = self._store.read()
        yield from _counters(snap)
        yield from _histograms(snap)
        yield from _gauges(snap, self._account)


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _counters(snap: Snapshot) -> Iterator[Metric]:
    c = snap.counters
    accepted = CounterMetricFamily(
        "notifier_messages_accepted", "Messages accepted (202), single or campaign recipients.",
        labels=["kind"],
    )  # fmt: skip
    for kind in ("single", "campaign"):
        accepted.add_metric([kind], c.get(f"accepted:{kind}", 0))
    yield accepted
    refused = CounterMetricFamily(
        "notifier_requests_refused", "Intake requests refused, by reason.", labels=["reason"]
    )
    for reason in sorted({*REASONS.values(), *_suffixes(c, "refused:")}):
        refused.add_metric([reason], c.get(f"refused:{reason}", 0))
    yield refused
    yield _counter("notifier_messages_sent", "Sends WeChat accepted.", c.get("sent", 0))
    failed = CounterMetricFamily(
        "notifier_messages_failed", "Sends refused for good, by WeChat's errcode.",
        labels=["errcode"],
    )  # fmt: skip
    by_code: Counter[str] = Counter()
    for code in _suffixes(c, "failed:"):
        by_code[_errcode_label(code)] += c[f"failed:{code}"]
    for label, count in sorted(by_code.items()):
        failed.add_metric([label], count)
    yield failed
    yield _counter("notifier_messages_dead", "Messages dead: retries used up.", c.get("dead", 0))
    yield _counter("notifier_send_retries", "Transient failures retried.", c.get("retries", 0))
    yield _counter(
        "notifier_token_refreshes", "Access tokens WeChat issued.", c.get("token_refreshes", 0)
    )


def _histograms(snap: Snapshot) -> Iterator[Metric]:
    docs = {
        "send_latency": ("notifier_send_latency_seconds", "From the 202 to WeChat's acceptance."),
        "wechat_request": ("notifier_wechat_request_seconds", "One HTTP call to WeChat's send."),
    }
    for kind, (name, doc) in docs.items():
        buckets, total = snap.histograms[kind]
        yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def _gauges(snap: Snapshot, account: str) -> Iterator[Metric]:
    depth = GaugeMetricFamily("notifier_queue_depth", "Tasks waiting in a queue.", labels=["queue"])
    oldest = GaugeMetricFamily(
        "notifier_oldest_queued_seconds", "How long the task at a queue's head has waited.",
        labels=["queue"],
    )  # fmt: skip
    for queue, (count, age) in snap.queues.items():
        depth.add_metric([queue], count)
        oldest.add_metric([queue], age)
    yield depth
    yield oldest
    if snap.quota_paused is None or snap.circuit_open is None:
        return  # no WECHAT_APP_ID: no account to report on
    states = {
        "notifier_circuit_open": ("1 while the circuit breaker holds sends back.",
                                  snap.circuit_open),
        "notifier_quota_paused": ("1 while the daily quota (45009) pauses sending.",
                                  snap.quota_paused),
    }  # fmt: skip
    for name, (doc, on) in states.items():
        gauge = GaugeMetricFamily(name, doc, labels=["account"])
        gauge.add_metric([account], int(on))
        yield gauge


def _suffixes(counters: dict[str, int], prefix: str) -> list[str]:
    return [field[len(prefix) :] for field in counters if field.startswith(prefix)]


def _errcode_label(code: str) -> str:
    """The errcode as a label, or `other` for a code nobody classified: bounded values."""
    try:
        return code if int(code) in KNOWN_ERRCODES else "other"
    except ValueError:
        return "other"


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    """Build the store, the collector and the registry once per app."""
    app = state.app
    svc = app.extensions["notifier"]
    store = MetricsStore(svc.stores.connection, (MESSAGES_QUEUE, CAMPAIGNS_QUEUE),
                         svc.settings.wechat_app_id)  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(store, svc.settings.wechat_app_id))
    token = svc.settings.metrics_token
    app.extensions[_EXTENSION] = (registry, Refusals(store), BearerTokens([token] if token else []))


@bp.after_app_request
def _count_refusal(response: Response) -> Response:
    """Count an intake request refused; a 503 (Redis away) waits in the process."""
    if request.endpoint in INTAKE and response.status_code >= 400:
        _, refusals, _ = _installed()
        reason = REASONS.get(response.status_code, "other")
        refusals.add(reason, flush=response.status_code != 503)
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """The fleet's metrics; with METRICS_TOKEN set, only for its bearer."""
    registry, refusals, bearer = _installed()
    if web_context().settings.metrics_token and not bearer.allows(
        request.headers.get("Authorization")
    ):
        return problem(401, "send Authorization: Bearer <METRICS_TOKEN>", challenge="Bearer")
    refusals.flush()
    return Response(generate_latest(registry), mimetype=None, content_type=TEXT_FORMAT)


def _installed() -> tuple[CollectorRegistry, Refusals, BearerTokens]:
    """This app's registry, pending refusals and scrape token."""
    found: tuple[CollectorRegistry, Refusals, BearerTokens] = current_app.extensions[_EXTENSION]
    return found
