"""GET /metrics on real processes: 50 messages, 10 refused for good, counted fleet-wide."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Stack, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
MESSAGES = ("queue", "notifier.messages")


def scrape(stack: Stack) -> Samples:
    """Every sample the web serves, by name and labels, as Prometheus's parser reads them."""
    response = requests.get(f"{stack.web}/metrics", timeout=5)
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, *labels: tuple[str, str]) -> float:
    key = (name, tuple(sorted(labels)))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_counters_the_latency_histogram_and_the_queue_move_with_50_messages(stack: Stack) -> None:
    before = scrape(stack)
    # Held in the queue first, so its depth and its head's age can be seen.
    stack.processes["worker"].stop()
    stack.fake("POST", "/_fake/faults", {"errcode": 43004, "times": 10})
    ids = stack.post_many(50, "metrics")
    queued = scrape(stack)
    assert moved(before, queued, "notifier_messages_accepted_total", ("kind", "single")) == 50
    assert queued["notifier_queue_depth", (MESSAGES,)] == 50
    assert queued["notifier_oldest_queued_seconds", (MESSAGES,)] > 0

    stack.start_worker()

    def settled() -> Samples | None:
        now = scrape(stack)
        done = moved(before, now, "notifier_messages_sent_total") + moved(
            before, now, "notifier_messages_failed_total", ("errcode", "43004")
        )
        return now if done >= len(ids) else None

    after = wait_for(settled, 60, "50 outcomes in the metrics")
    assert moved(before, after, "notifier_messages_sent_total") == 40
    assert moved(before, after, "notifier_messages_failed_total", ("errcode", "43004")) == 10
    assert moved(before, after, "notifier_messages_dead_total") == 0
    assert moved(before, after, "notifier_send_retries_total") == 0
    assert moved(before, after, "notifier_send_latency_seconds_count") == 40
    assert moved(before, after, "notifier_send_latency_seconds_bucket", ("le", "+Inf")) == 40
    # Each sent message waited at least the time it was held in the queue.
    assert moved(before, after, "notifier_send_latency_seconds_sum") > 0
    assert moved(before, after, "notifier_wechat_request_seconds_count") == 50
    assert after["notifier_queue_depth", (MESSAGES,)] == 0
    assert after["notifier_oldest_queued_seconds", (MESSAGES,)] == 0
    assert stack.fake("GET", "/_fake/stats")["pending_faults"] == 0
