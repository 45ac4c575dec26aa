"""Scheduled work: admitted into the schedule, moved once when due, cancelled atomically."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from notifier.broker.envelopes import queued_at, task_args
from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.store.admission import Admission
from notifier.store.keys import PREFIX, campaign_key, message_key, schedule_key, unfinished_key
from notifier.store.messages import MessageState
from notifier.store.schedule import Schedule, due_time
from tests.conftest import GOOD, Clock

NOW = 1_800_000_000.0
SEND_AT = "2027-01-15T08:00:20+00:00"  # NOW + 20 s
DUE = NOW + 20
RETENTION = 3600


@pytest.fixture
def clock() -> Clock:
    moving = Clock()
    moving.now = NOW
    return moving


@pytest.fixture
def admission(redis_client: redis.Redis, clock: Clock) -> Admission:
    return Admission(redis_client, idempotency_ttl=600, retention=RETENTION, clock=clock)


@pytest.fixture
def schedule(redis_client: redis.Redis, clock: Clock) -> Schedule:
    return Schedule(redis_client, retention=RETENTION, clock=clock)


def campaign(count: int, **extra: Any) -> dict[str, Any]:
    people = [{"touser": f"oPerson{i:06d}"} for i in range(count)]
    return {"template_id": "TPL", "data": {"k": {"value": "v"}}, "recipients": people, **extra}


def test_due_time_reads_the_offset() -> None:
    assert due_time(SEND_AT) == DUE
    assert due_time("2027-01-15T16:00:20+08:00") == DUE
    assert due_time("2027-01-15T08:00:20.5Z") == DUE + 0.5
    for bad in ("2027-01-15T08:00:20", "2027-01-15 08:00:20Z", "2027-02-30T08:00:00Z"):
        with pytest.raises(ValueError):
            due_time(bad)


def test_a_scheduled_message_waits_in_the_schedule_not_on_a_queue(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    message_id = admission.message("w1", b"{}", {**GOOD, "send_at": SEND_AT}).id
    record = message_key(PREFIX, message_id)
    assert redis_client.hget(record, "status") == b"scheduled"
    assert redis_client.hget(record, "send_at") == SEND_AT.encode()
    assert redis_client.llen(MESSAGES_QUEUE) == 0
    assert redis_client.zcard(unfinished_key(MESSAGES_QUEUE)) == 0  # not the reconciler's
    assert schedule.due(message_id) == DUE
    # Kept until its send_at, then for the retention like any other record.
    assert RETENTION + 15 < redis_client.ttl(record) <= RETENTION + 20


def test_a_scheduled_campaign_is_one_member_however_many_chunks(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    campaign_id = admission.campaign("w2", b"{}", campaign(250, send_at=SEND_AT)).id
    assert redis_client.hget(campaign_key(PREFIX, campaign_id), "state") == b"scheduled"
    assert redis_client.zrange(schedule_key(PREFIX), 0, -1) == [campaign_id.encode()]
    assert redis_client.hlen(campaign_key(PREFIX, campaign_id, "chunks")) == 3
    assert redis_client.llen(CAMPAIGNS_QUEUE) == 0
    assert redis_client.zcard(unfinished_key(CAMPAIGNS_QUEUE)) == 0


def test_the_mover_moves_only_what_is_due_with_intakes_push(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    now_id = admission.message("w0", b"{}", GOOD).id
    later = admission.message("w1", b"{}", {**GOOD, "send_at": SEND_AT}).id
    much_later = admission.message("w2", b"{}", {**GOOD, "send_at": "2027-01-15T08:01:00+00:00"}).id
    bulk = admission.campaign("w3", b"{}", campaign(150, send_at=SEND_AT)).id
    assert schedule.move_due(100, now=DUE - 0.001).lateness == []
    moved = schedule.move_due(100, now=DUE + 0.25)
    assert sorted(moved.lateness) == [0.25, 0.25]
    queued = [task_args(raw)[1][0] for raw in redis_client.lrange(MESSAGES_QUEUE, 0, -1)]
    assert [arg["id"] for arg in queued] == [later, now_id]
    chunks = [task_args(raw)[1][0] for raw in redis_client.lrange(CAMPAIGNS_QUEUE, 0, -1)]
    assert sorted(c["chunk"] for c in chunks) == [0, 1] and chunks[0]["batch"] == bulk
    # Dated by its due time, and tracked as unfinished from the move on.
    assert queued_at(redis_client.lindex(MESSAGES_QUEUE, 0) or b"") == DUE
    assert redis_client.zscore(unfinished_key(MESSAGES_QUEUE), later) == DUE + 0.25
    assert redis_client.zcard(unfinished_key(CAMPAIGNS_QUEUE)) == 2
    state = MessageState(redis_client)
    assert state.status(later) == "queued" and state.status(much_later) == "scheduled"
    record = state.get(later)
    assert record is not None and [h["status"] for h in record.history] == ["scheduled", "queued"]
    assert redis_client.hget(campaign_key(PREFIX, bulk), "state") == b"queued"
    assert schedule.waiting() == 1
    assert redis_client.hkeys(schedule_key(PREFIX, "work")) == [much_later.encode()]


def test_the_mover_reads_redis_clock_when_given_none(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    admission.message("w1", b"{}", {**GOOD, "send_at": "2020-01-01T00:00:00Z"})
    moved = schedule.move_due(10)
    seconds, micros = redis_client.time()
    assert abs(moved.now - (seconds + micros / 1e6)) < 2
    assert len(moved.lateness) == 1


def test_a_worker_skips_a_scheduled_or_cancelled_message(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    state = MessageState(redis_client)
    waiting = admission.message("w1", b"{}", {**GOOD, "send_at": SEND_AT}).id
    assert state.begin_attempt(waiting, 30)[:2] == (0, "scheduled")
    assert schedule.cancel_message(waiting) == "scheduled"
    assert state.begin_attempt(waiting, 30)[:2] == (0, "cancelled")


def test_a_moved_message_counts_its_latency_from_its_move(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    from notifier.store.metrics import Tally

    state = MessageState(redis_client)
    message_id = admission.message("w1", b"{}", {**GOOD, "send_at": SEND_AT}).id
    schedule.move_due(10, now=DUE + 0.1)
    tally = Tally()
    assert state.begin_attempt(message_id, 30, tally)[0] == 1
    assert tally.admitted == DUE + 0.1


def test_cancel_takes_a_scheduled_message_out_and_refuses_a_queued_one(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    waiting = admission.message("w1", b"{}", {**GOOD, "send_at": SEND_AT}).id
    queued = admission.message("w2", b"{}", GOOD).id
    assert schedule.cancel_message(waiting) == "scheduled"
    assert schedule.cancel_message(waiting) == "cancelled"  # a repeat changes nothing
    assert schedule.cancel_message(queued) == "queued"
    assert schedule.cancel_message("f" * 32) is None
    assert schedule.waiting() == 0 and redis_client.hlen(schedule_key(PREFIX, "work")) == 0
    assert schedule.move_due(10, now=DUE + 1).lateness == []
    assert redis_client.llen(MESSAGES_QUEUE) == 1  # the queued one only
    record = MessageState(redis_client).get(waiting)
    assert record is not None and record.status == "cancelled"
    assert record.as_dict()["send_at"] == SEND_AT
    assert redis_client.ttl(message_key(PREFIX, waiting)) <= RETENTION


def test_cancel_of_a_scheduled_campaign_drops_its_recipients(
    admission: Admission, redis_client: redis.Redis, schedule: Schedule
) -> None:
    campaign_id = admission.campaign("w1", b"{}", campaign(120, send_at=SEND_AT)).id
    assert schedule.cancel_campaign(campaign_id) == "scheduled"
    assert redis_client.hget(campaign_key(PREFIX, campaign_id), "state") == b"cancelled"
    assert not redis_client.exists(campaign_key(PREFIX, campaign_id, "chunks"))
    assert schedule.move_due(10, now=DUE + 1).lateness == []
    assert redis_client.llen(CAMPAIGNS_QUEUE) == 0
    moved_id = admission.campaign("w2", b"{}", campaign(3, send_at=SEND_AT)).id
    schedule.move_due(10, now=DUE)
    assert schedule.cancel_campaign(moved_id) == "queued"


def _race(*jobs: Callable[[], Any]) -> None:
    """Run the jobs at once, each in its own thread and Redis connection."""
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[], Any]) -> None:
        start.wait()
        try:
            job()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def test_two_movers_at_once_push_each_entry_exactly_once(
    admission: Admission, redis_client: redis.Redis
) -> None:
    ids = [admission.message(f"w{i}", b"{}", {**GOOD, "send_at": SEND_AT}).id for i in range(300)]
    bulk = admission.campaign("wc", b"{}", campaign(1000, send_at=SEND_AT)).id
    url = redis_client.connection_pool.connection_kwargs
    movers = [Schedule(redis.Redis(**url)) for _ in range(2)]
    moved: list[list[float]] = [[], []]

    def mover(n: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(50):  # small passes, so the two interleave
                moved[n] += movers[n].move_due(7, now=DUE).lateness

        return run

    _race(mover(0), mover(1))
    assert len(moved[0]) + len(moved[1]) == 301
    assert moved[0] and moved[1], "one mover did everything: no race was tried"
    queued = [task_args(raw)[1][0]["id"] for raw in redis_client.lrange(MESSAGES_QUEUE, 0, -1)]
    assert sorted(queued) == sorted(ids)
    chunks = redis_client.lrange(CAMPAIGNS_QUEUE, 0, -1)
    assert sorted(task_args(raw)[1][0]["chunk"] for raw in chunks) == list(range(10))
    assert {task_args(raw)[1][0]["batch"] for raw in chunks} == {bulk}


def test_cancels_racing_the_mover_never_both_win(
    admission: Admission, redis_client: redis.Redis
) -> None:
    ids = [admission.message(f"w{i}", b"{}", {**GOOD, "send_at": SEND_AT}).id for i in range(400)]
    url = redis_client.connection_pool.connection_kwargs
    mover, canceller = Schedule(redis.Redis(**url)), Schedule(redis.Redis(**url))
    cancelled: list[str] = []

    def move() -> None:
        for _ in range(100):
            mover.move_due(3, now=DUE)

    def cancel() -> None:
        cancelled.extend(i for i in ids if canceller.cancel_message(i) == "scheduled")

    _race(move, cancel)
    mover.move_due(1000, now=DUE)
    queued = {task_args(raw)[1][0]["id"] for raw in redis_client.lrange(MESSAGES_QUEUE, 0, -1)}
    assert cancelled and queued, "one side won every time: no race was tried"
    assert queued.isdisjoint(cancelled) and queued | set(cancelled) == set(ids)
    assert redis_client.llen(MESSAGES_QUEUE) == len(queued)
    state = MessageState(redis_client)
    assert {state.status(i) for i in cancelled} == {"cancelled"}
    assert {state.status(i) for i in queued} == {"queued"}
