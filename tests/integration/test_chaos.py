"""Chaos: kill the worker, restart Redis, make WeChat misbehave; nothing lost, nothing twice.

These tests use a 20 s visibility timeout instead of the production 90 s, so a
killed worker's messages come back quickly; the mechanism is the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.conftest import Stack, wait_for

VISIBILITY = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("chaos"), BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY))
    try:
        yield running.start()
    finally:
        running.stop()


def post_many(stack: Stack, count: int, prefix: str) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: stack.post(touser=f"o{prefix}{i:06d}"), range(count)))


def assert_each_sent_once(stack: Stack, ids: list[str], timeout: float) -> None:
    counts = stack.wait_delivered(ids, timeout=timeout)
    twice = {i: n for i, n in counts.items() if n != 1}
    assert not twice, f"delivered more than once: {twice}"
    wait_for(lambda: all(stack.status(i) == "sent" for i in ids), 30, "every status to be sent")


def test_a_worker_killed_mid_flight_loses_and_duplicates_nothing(stack: Stack) -> None:
    # Slow sends keep messages in flight when the worker dies.
    stack.fake("POST", "/_fake/faults", {"delay_ms": 800, "times": 24})
    ids = post_many(stack, 60, "Kill")
    wait_for(lambda: stack.fake("GET", "/_fake/stats")["send_calls"] >= 8, 30, "sends in flight")
    stack.processes["worker"].stop(kill=True)
    delivered_at_kill = sum(stack.deliveries_of(ids).values())
    assert delivered_at_kill < len(ids), "the worker finished before it was killed"
    restarted = time.monotonic()
    stack.start_worker()
    assert_each_sent_once(stack, ids, timeout=120)
    assert time.monotonic() - restarted < 120


def refused_fast_while_down(stack: Stack) -> None:
    for _ in range(3):
        started = time.monotonic()
        response = stack.client().post_message(
            {"touser": "oDownUser0001", "template_id": "T", "data": {"k": {"value": "v"}}}
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert elapsed < 3.0, f"503 took {elapsed:.1f}s"


def accepting(stack: Stack) -> bool:
    try:
        message = {"touser": "oBackUser0001", "template_id": "T", "data": {"k": {"value": "v"}}}
        return stack.client().post_message(message).status_code == 202
    except requests.RequestException:
        return False


def test_queued_messages_survive_a_redis_restart(stack: Stack) -> None:
    stack.processes["worker"].stop()  # nothing consumes: everything stays in the queue
    queued = post_many(stack, 40, "Persist")
    stack.restart_redis(down=lambda: refused_fast_while_down(stack))
    wait_for(lambda: accepting(stack), 30, "the web app to accept messages again")
    stack.start_worker()
    assert_each_sent_once(stack, queued, timeout=60)


def test_a_running_worker_reconnects_after_a_redis_restart(stack: Stack) -> None:
    stack.fake("POST", "/_fake/faults", {"delay_ms": 300, "times": 40})
    in_flight = post_many(stack, 40, "Redis")
    stack.restart_redis(down=lambda: refused_fast_while_down(stack))
    wait_for(lambda: accepting(stack), 30, "the web app to accept messages again")
    after = post_many(stack, 20, "After")
    assert_each_sent_once(stack, in_flight + after, timeout=120)
    worker = stack.processes["worker"].popen
    assert worker is not None and worker.poll() is None  # the same worker did it


def test_a_misbehaving_wechat_still_delivers_each_message_once(stack: Stack) -> None:
    stack.fake(
        "POST",
        "/_fake/faults",
        [
            {"errcode": -1, "times": 6},
            {"http_status": 500, "times": 4},
            {"http_status": 502, "times": 2},
            {"delay_ms": 1500, "times": 3},  # answered after the worker's 1 s timeout, but landed
            {"delay_ms": 1500, "drop": True, "times": 2},  # timed out and lost
        ],
    )
    first = post_many(stack, 30, "Flaky")
    stack.fake("POST", "/_fake/invalidate-token")
    second = post_many(stack, 30, "Flaky2")
    assert_each_sent_once(stack, first + second, timeout=90)


def test_a_campaign_worker_killed_mid_chunk_loses_and_duplicates_nothing(stack: Stack) -> None:
    # Slow sends keep both chunks part-way through when the worker dies; its last
    # sends are not yet recorded, so the chunks come back and resend them.
    stack.fake("POST", "/_fake/faults", {"delay_ms": 150, "times": 60})
    bulk = stack.start_worker("bulk", queue="notifier.campaigns")
    people = [{"touser": f"oChaosBulk{i:05d}"} for i in range(200)]
    response = stack.client().post_batch(
        {"template_id": "TPL_KILL", "data": {"thing1": {"value": "x"}}, "recipients": people}
    )
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]
    ids = [f"{batch_id}-{i}" for i in range(200)]
    wait_for(lambda: sum(stack.deliveries_of(ids).values()) >= 30, 30, "part of it sent")
    bulk.stop(kill=True)
    assert sum(stack.deliveries_of(ids).values()) < len(ids), "the campaign finished too soon"
    stack.start_worker("bulk", queue="notifier.campaigns")
    try:
        counts = stack.wait_delivered(ids, timeout=120)
        assert set(counts.values()) == {1}, {i: n for i, n in counts.items() if n != 1}
        batch = f"notifier:batch:{batch_id}"
        wait_for(lambda: stack.field(batch, "n:sent") == str(len(ids)), 30, "outcomes recorded")
    finally:
        stack.processes["bulk"].stop()


def test_a_message_that_never_gets_through_ends_dead_after_its_retry_budget(stack: Stack) -> None:
    stack.fake("POST", "/_fake/faults", {"errcode": -1, "times": 5})  # SEND_MAX_RETRIES=4 → 5 tries
    message_id = stack.post(touser="oDoomedUser001")
    wait_for(lambda: stack.status(message_id) == "dead", 60, "status dead")
    assert stack.deliveries_of([message_id]) == {message_id: 0}
    assert stack.fake("GET", "/_fake/stats")["pending_faults"] == 0
