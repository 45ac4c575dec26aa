"""Message records: transitions, indexes, replay exactly once, receipts applied once."""

from __future__ import annotations

import threading

import redis

from notifier.store.keys import PREFIX, message_key
from notifier.store.messages import MessageState

PAYLOAD = {"id": "m1", "touser": "oU1", "template_id": "T", "data": {"k": {"value": "v"}}}


def test_history_records_every_transition_with_times(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client, clock=iter([1.0, 2.0, 3.0]).__next__)
    state.record_queued("m1")
    state.record_retrying("m1", -1, "system busy")
    state.record_sent("m1", 99)
    record = state.get("m1")
    assert record is not None
    view = record.as_dict()
    assert view["status"] == "sent" and view["msgid"] == 99
    assert "errcode" not in view  # cleared once sent
    assert [(h["status"], h["at"]) for h in view["history"]] == [
        ("queued", "1970-01-01T00:00:01.000Z"),
        ("retrying", "1970-01-01T00:00:02.000Z"),
        ("sent", "1970-01-01T00:00:03.000Z"),
    ]
    assert view["history"][1]["errcode"] == -1


def test_records_expire_after_the_retention(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client, retention=3600)
    state.record_queued("m1")
    assert 3590 < redis_client.ttl(message_key(PREFIX, "m1")) <= 3600
    assert 3590 < redis_client.ttl(message_key(PREFIX, "m1", "history")) <= 3600


def test_failed_and_dead_messages_are_indexed_with_their_payload(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client)
    for message_id in ("a", "b"):
        state.record_queued(message_id)
    state.record_failed("a", 43004, "require subscribe", PAYLOAD)
    state.record_dead("b", -1, "system busy", PAYLOAD)
    assert state.ids(state.dead_index) == ["a", "b"]
    record = state.get("a")
    assert record is not None and record.payload == PAYLOAD


def test_a_replay_requeues_once_even_when_two_operators_race(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.record_dead("m1", -1, "busy", PAYLOAD)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(state.requeue("m1", "replayed")))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r for r in results if r is not None] == ["dead"]
    record = state.get("m1")
    assert record is not None
    assert record.status == "queued"
    assert [h["status"] for h in record.history] == ["queued", "dead", "queued"]
    assert record.history[-1]["detail"] == "replayed"
    assert state.ids(state.dead_index) == []


def test_a_message_that_is_not_parked_cannot_be_replayed(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.record_sent("m1", 5)
    assert state.requeue("m1", "replayed") is None
    assert state.requeue("never-existed", "replayed") is None


def test_a_receipt_is_applied_once(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.record_sent("m1", 7)
    assert state.message_for_msgid(7) == "m1"
    assert state.record_receipt("m1", "delivered", "success")
    assert not state.record_receipt("m1", "delivered", "success")
    record = state.get("m1")
    assert record is not None
    assert [h["status"] for h in record.history] == ["queued", "sent", "delivered"]


def test_a_receipt_that_outruns_the_send_is_applied_when_the_send_is_recorded(
    redis_client: redis.Redis,
) -> None:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.keep_early_receipt(8, "failed", "failed:user block")
    state.record_sent("m1", 8)
    record = state.get("m1")
    assert record is not None
    assert (record.status, record.errmsg) == ("failed", "failed:user block")


def test_a_deferred_message_is_sent_only_after_its_requeue(redis_client: redis.Redis) -> None:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.record_deferred("m1", 45009, "daily quota", PAYLOAD)
    assert state.begin_attempt("m1", 30) == (0, "deferred", None)  # a stray copy
    assert state.requeue("m1", "resumed") == "deferred"
    attempts, status, stored = state.begin_attempt("m1", 30)
    assert (attempts, status, stored) == (1, "queued", PAYLOAD)
