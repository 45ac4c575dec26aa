"""The tasks' last line of defence: an unexpected failure still ends in a visible state."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from notifier.errors import PermanentError, RetriesExhausted
from notifier.store.messages import MessageState
from notifier.worker import tasks
from notifier.worker.sender import AlreadyClaimed


class Campaign:
    def __init__(self) -> None:
        self.settled: list[tuple[Any, ...]] = []

    def resolve(self, chunk: dict[str, Any]) -> dict[str, Any]:
        return chunk

    def settle(self, *args: Any) -> int:
        self.settled.append(args)
        return 1


@pytest.fixture
def services(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The worker's context with real message records and a recording campaign sender."""
    state = MessageState(redis_client)
    fake = SimpleNamespace(
        stores=SimpleNamespace(messages=state), campaigns=Campaign(), state=state
    )
    monkeypatch.setattr(tasks, "worker_context", lambda: fake)
    return fake


def test_an_unexpected_failure_of_a_send_records_it_dead(services: SimpleNamespace) -> None:
    services.state.record_queued("m1")
    payload = {"id": "m1", "touser": "oU1"}
    tasks.send_template.on_failure(RuntimeError("boom"), "t1", (payload,), {}, None)
    record = services.state.get("m1")
    assert (record.status, record.errcode, record.payload) == ("dead", -1004, payload)


def test_expected_endings_and_final_messages_are_left_alone(services: SimpleNamespace) -> None:
    services.state.record_queued("m1")
    services.state.record_sent("m1", 7)
    tasks.send_template.on_failure(RuntimeError("late"), "t1", ({"id": "m1"},), {}, None)
    tasks.send_template.on_failure(PermanentError(43004, "x"), "t2", ({"id": "m2"},), {}, None)
    assert services.state.status("m1") == "sent"
    assert services.state.status("m2") is None


def test_an_unexpected_failure_of_a_chunk_settles_its_recipients(services: SimpleNamespace) -> None:
    chunk = {"batch": "b" * 32, "recipients": [[0, "oU1", None]]}
    tasks.send_chunk.on_failure(RuntimeError("boom"), "t1", (chunk,), {}, None)
    tasks.send_chunk.on_failure(RetriesExhausted(-1, "busy"), "t2", (chunk,), {}, None)
    assert len(services.campaigns.settled) == 1
    assert services.campaigns.settled[0][:3] == (chunk, "dead", -1004)


def test_a_message_claimed_elsewhere_is_looked_at_again_under_its_own_task_id(
    services: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Claimed:
        def deliver(self, payload: dict[str, Any], last_attempt: bool) -> int:
            raise AlreadyClaimed(30)

    services.sender = Claimed()
    later: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.send_template, "apply_async", lambda *a, **kw: later.append((a, kw)))
    tasks.send_template.push_request(id="m1", retries=0)
    try:
        assert tasks.send_template.run({"id": "m1"}) is None
    finally:
        tasks.send_template.pop_request()
    assert later == [((({"id": "m1"},),), {"countdown": 30, "task_id": "m1", "retries": 0})]


def test_a_failure_redis_caused_is_left_for_the_reconciler(services: SimpleNamespace) -> None:
    services.state.record_queued("m1")
    refused = redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
    tasks.send_template.on_failure(refused, "t1", ({"id": "m1"},), {}, None)
    assert services.state.status("m1") == "queued"
