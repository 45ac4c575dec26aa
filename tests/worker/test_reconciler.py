"""The reconciler: work the broker lost is queued again once; work still held is left alone."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redis

from notifier.broker.envelopes import task_args, task_message
from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.store.admission import Admission
from notifier.store.campaigns import CampaignStore
from notifier.store.keys import PREFIX, message_key, unfinished_key
from notifier.store.messages import MessageState
from notifier.store.unfinished import UnfinishedWork
from notifier.worker.reconciler import Reconciler
from tests.conftest import QueueView

MESSAGE = {"touser": "oUser0001", "template_id": "T", "data": {"k": {"value": "v"}}}
STALE = 120.0


@pytest.fixture
def admission(redis_client: redis.Redis) -> Admission:
    return Admission(redis_client, idempotency_ttl=3600, retention=3600)


@pytest.fixture
def later(redis_client: redis.Redis) -> Callable[[float], Reconciler]:
    """A reconciler told that the time is `seconds` later than it is."""

    def make(seconds: float) -> Reconciler:
        return Reconciler(
            UnfinishedWork(redis_client), stale_after=STALE, clock=lambda: time.time() + seconds
        )

    return make


def admit(admission: Admission, count: int) -> list[str]:
    return [admission.message(f"w{i}", b"{}", MESSAGE).id for i in range(count)]


def test_work_waiting_in_its_queue_is_never_queued_again(
    admission: Admission, redis_client: redis.Redis, later: Callable[[float], Reconciler]
) -> None:
    admit(admission, 3)
    assert later(STALE * 10).run() == {MESSAGES_QUEUE: 0, CAMPAIGNS_QUEUE: 0}
    assert redis_client.llen(MESSAGES_QUEUE) == 3


def test_a_message_taken_off_the_queue_and_lost_is_queued_again_once(
    admission: Admission, redis_client: redis.Redis, later: Callable[[float], Reconciler]
) -> None:
    lost, kept = admit(admission, 2)
    redis_client.rpop(MESSAGES_QUEUE)  # a worker took the oldest, then died unrecorded
    queue = QueueView(redis_client, MESSAGES_QUEUE)
    assert later(STALE - 5).run()[MESSAGES_QUEUE] == 0  # not stale yet
    assert later(STALE + 5).run()[MESSAGES_QUEUE] == 0  # still older than what waits: wait
    redis_client.rpop(MESSAGES_QUEUE)  # `kept` was taken and sent
    MessageState(redis_client).record_sent(kept, 7)
    assert later(STALE + 5).run()[MESSAGES_QUEUE] == 1
    assert [task["id"] for task in queue.tasks] == [lost]
    assert queue.published[0]["touser"] == "oUser0001"  # the payload is in the record
    assert later(STALE + 5).run()[MESSAGES_QUEUE] == 0  # queued now: not again
    record = MessageState(redis_client).get(lost)
    assert record is not None and record.status == "queued"
    assert record.history[-1]["detail"].startswith("queued again")
    assert redis_client.zrange(unfinished_key(MESSAGES_QUEUE), 0, -1) == [lost.encode()]


def test_a_message_being_sent_or_final_is_not_queued_again(
    admission: Admission, redis_client: redis.Redis, later: Callable[[float], Reconciler]
) -> None:
    busy, done = admit(admission, 2)
    redis_client.delete(MESSAGES_QUEUE)
    redis_client.set(message_key(PREFIX, busy, "claim"), "1", ex=60)
    redis_client.hset(message_key(PREFIX, done), "status", "dead")
    assert later(STALE + 5).run()[MESSAGES_QUEUE] == 0
    assert redis_client.llen(MESSAGES_QUEUE) == 0
    # The final one leaves the set; the one being sent stays, to be looked at again.
    assert redis_client.zrange(unfinished_key(MESSAGES_QUEUE), 0, -1) == [busy.encode()]


def test_an_undated_task_at_the_head_of_the_queue_makes_the_pass_wait(
    admission: Admission, redis_client: redis.Redis, later: Callable[[float], Reconciler]
) -> None:
    admit(admission, 1)
    redis_client.delete(MESSAGES_QUEUE)
    undated = json.loads(task_message("notifier.send_template", [{"id": "x"}], MESSAGES_QUEUE))
    del undated["headers"]["queued_at"]  # as an older version queued it
    redis_client.rpush(MESSAGES_QUEUE, json.dumps(undated))
    assert later(STALE + 5).run()[MESSAGES_QUEUE] == 0
    redis_client.delete(MESSAGES_QUEUE)
    assert later(STALE + 5).run()[MESSAGES_QUEUE] == 1


def test_messages_returned_to_the_head_by_the_broker_do_not_make_the_rest_look_lost(
    admission: Admission, redis_client: redis.Redis, later: Callable[[float], Reconciler]
) -> None:
    admit(admission, 30)
    state = MessageState(redis_client, clock=lambda: time.time() + 60)
    taken = [redis_client.rpop(MESSAGES_QUEUE) for _ in range(10)]
    for raw in taken:  # begun a minute later, then returned by kombu's restore (RPUSH)
        message_id = task_args(raw)[1][0]["id"]
        state.begin_attempt(message_id, 1)
        redis_client.delete(message_key(PREFIX, message_id, "claim"))
        redis_client.rpush(MESSAGES_QUEUE, raw)
    assert later(STALE + 90).run()[MESSAGES_QUEUE] == 0
    assert redis_client.llen(MESSAGES_QUEUE) == 30


def test_a_lost_campaign_chunk_is_queued_again_and_a_finished_one_forgotten(
    admission: Admission, redis_client: redis.Redis, later: Callable[[float], Reconciler]
) -> None:
    people = [{"touser": f"oPerson{i:06d}"} for i in range(150)]
    batch = {"template_id": "T", "data": {"k": {"value": "v"}}, "recipients": people}
    campaign_id = admission.campaign("camp", b"{}", batch).id
    redis_client.delete(CAMPAIGNS_QUEUE)  # both chunks taken, both lost
    CampaignStore(redis_client, 3600).finish_chunk(
        campaign_id, 1
    )  # ... but the second had finished
    assert later(STALE + 5).run()[CAMPAIGNS_QUEUE] == 1
    chunks = QueueView(redis_client, CAMPAIGNS_QUEUE)
    assert chunks.tasks == [{"batch": campaign_id, "chunk": 0}]
    assert len(chunks.published[0]["recipients"]) == 100
    members = redis_client.zrange(unfinished_key(CAMPAIGNS_QUEUE), 0, -1)
    assert members == [f"{campaign_id}.0".encode()]
