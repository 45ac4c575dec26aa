"""A 150 s WeChat outage under load: the breaker opens, holds the fleet's calls back, and every
message is sent once WeChat is back; none is dead, and the outage costs few calls."""

from __future__ import annotations

import re
import time

import pytest
import requests

from notifier.store.breaker import Breaker
from tests.integration.conftest import APP_ID, Stack, wait_for

OUTAGE = 150  # seconds of errcode -1 for every send
MESSAGES = 100


def breaker_open(stack: Stack) -> bool:
    """The breaker's own read method, straight from the stack's Redis."""
    client = stack.redis_client()
    try:
        return Breaker(client, APP_ID).status().open
    finally:
        client.close()


def metrics_say_open(stack: Stack) -> bool | None:
    """notifier_circuit_open at /metrics: None when the web serves no such metric."""
    response = requests.get(f"{stack.web}/metrics", timeout=5)
    if response.status_code != 200 or "notifier_circuit_open" not in response.text:
        return None
    found = re.search(rf'^notifier_circuit_open{{account="{APP_ID}"}} (\S+)$', response.text, re.M)
    assert found, response.text
    return float(found.group(1)) == 1


@pytest.mark.long
def test_an_outage_opens_the_breaker_and_every_message_is_sent_after_it(stack: Stack) -> None:
    started = time.monotonic()
    stack.fake("POST", "/_fake/faults", {"errcode": -1, "for_seconds": OUTAGE})
    ids = stack.post_many(MESSAGES, "Outage")
    wait_for(lambda: breaker_open(stack), 30, "the breaker to open")
    worker = stack.processes["worker"]
    wait_for(lambda: f"circuit breaker for {APP_ID} opened" in worker.latest(), 10, "its log")
    assert metrics_say_open(stack) in (True, None)

    stack.assert_each_sent_once(ids, timeout=OUTAGE + 90)  # sent, none dead, none twice
    assert time.monotonic() - started > OUTAGE  # nothing got through the outage
    log = worker.latest()
    assert f"circuit breaker for {APP_ID} half-open" in log
    assert f"circuit breaker for {APP_ID} closed" in log
    assert not breaker_open(stack)
    assert metrics_say_open(stack) in (False, None)
    # Every call during the outage was answered -1: today's retries would make hundreds.
    failed_calls = stack.fake("GET", "/_fake/stats")["errors_by_code"].get("-1", 0)
    assert 20 <= failed_calls <= MESSAGES, failed_calls
