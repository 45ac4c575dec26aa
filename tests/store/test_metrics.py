"""The fleet's metrics in Redis: counters and buckets move with each recorded outcome, once."""

from __future__ import annotations

import json

import redis

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.store.admission import Admission
from notifier.store.campaigns import CampaignStore, Outcome, Settled
from notifier.store.keys import PREFIX, account_key, metrics_key
from notifier.store.messages import MessageState
from notifier.store.metrics import SEND_LATENCY, WECHAT_REQUEST, MetricsStore, Snapshot, Tally
from notifier.store.tokens import TokenStore
from notifier.store.unfinished import message_envelope
from notifier.wechat.client import AccessToken

PAYLOAD = {"id": "m1", "touser": "oU1", "template_id": "T", "data": {"k": {"value": "v"}}}
QUEUES = (MESSAGES_QUEUE, CAMPAIGNS_QUEUE)


def read(client: redis.Redis, app_id: str = "wx_app", now: float = 1000.0) -> Snapshot:
    return MetricsStore(client, QUEUES, app_id, clock=lambda: now).read()


def bucket(snap: Snapshot, kind: str, bound: str) -> int:
    return dict(snap.histograms[kind][0])[bound]


def test_admissions_count_single_messages_and_each_campaign_recipient_once(
    redis_client: redis.Redis,
) -> None:
    admission = Admission(redis_client, idempotency_ttl=3600, retention=3600)
    admission.message("w1", b"{}", {"touser": "oU1", "template_id": "T", "data": {}})
    admission.message("w1", b"{}", {"touser": "oU1", "template_id": "T", "data": {}})  # repeat
    recipients = [{"touser": f"oU{i}"} for i in range(3)]
    admission.campaign("w2", b"[]", {"template_id": "T", "data": {}, "recipients": recipients})
    counters = read(redis_client).counters
    assert counters["accepted:single"] == 1
    assert counters["accepted:campaign"] == 3


def test_a_sent_message_counts_once_with_its_latency_from_the_202(
    redis_client: redis.Redis,
) -> None:
    clock = iter([100.0, 100.5, 103.0]).__next__  # admitted, attempt begun, answered
    state = MessageState(redis_client, clock=clock)
    state.record_queued("m1", PAYLOAD)
    tally = Tally()
    state.begin_attempt("m1", 30, tally)
    assert tally.admitted == 100.0
    tally.observe(WECHAT_REQUEST, 0.03)
    state.record_sent("m1", 42, tally)
    snap = read(redis_client)
    assert snap.counters["sent"] == 1
    latency, total = snap.histograms["send_latency"]
    assert dict(latency)["2.5"] == 0 and dict(latency)["5"] == 1 and dict(latency)["+Inf"] == 1
    assert total == 3.0
    assert bucket(snap, "wechat_request", "0.025") == 0
    assert bucket(snap, "wechat_request", "0.05") == 1


def test_retries_failures_by_errcode_and_dead_letters_are_counted(
    redis_client: redis.Redis,
) -> None:
    state = MessageState(redis_client)
    for message_id in ("a", "b", "c"):
        state.record_queued(message_id, PAYLOAD)
    tally = Tally()
    tally.observe(WECHAT_REQUEST, 12.0)  # past the last bound: +Inf only
    state.record_retrying("a", -1, "busy", tally)
    state.record_retrying("a", -1, "busy")
    state.record_failed("b", 43004, "require subscribe", PAYLOAD)
    state.record_dead("c", -1, "busy", PAYLOAD)
    state.record_deferred("a", 45009, "quota", PAYLOAD)  # neither failed nor dead
    snap = read(redis_client)
    assert snap.counters == {"retries": 2, "failed:43004": 1, "dead": 1}
    requests, total = snap.histograms["wechat_request"]
    assert dict(requests)["10"] == 0 and dict(requests)["+Inf"] == 1 and total == 12.0


def test_campaign_outcomes_count_each_change_once(redis_client: redis.Redis) -> None:
    store = CampaignStore(redis_client, retention=3600)
    tally = Tally(admitted=10.0)
    tally.sent(10.2)
    tally.observe(WECHAT_REQUEST, 0.2)
    settled = [
        Settled(0, Outcome("sent", 1, 501)),
        Settled(1, Outcome("retrying", 1, None, -1)),
        Settled(2, Outcome("failed", 1, None, 43004), "oU2", "require subscribe"),
        Settled(3, Outcome("dead", 1, None, -1), "oU3", "busy"),
    ]
    store.record_many("c1", settled, tally=tally)
    store.record_many("c1", settled, tally=tally)  # a write sent again: nothing twice
    store.record_many("c1", [Settled(1, Outcome("retrying", 2, None, -1))])  # its next retry
    store.record_many("c1", [Settled(2, Outcome("retrying", 2, None, -1))])  # final stays final
    store.apply_receipt("c1", 0, "failed", "user blocked")  # a receipt, not a send's failure
    snap = read(redis_client)
    assert snap.counters == {"sent": 1, "retries": 2, "failed:43004": 1, "dead": 1}
    assert bucket(snap, "send_latency", "0.25") == 1
    assert bucket(snap, "wechat_request", "0.25") == 1


def test_token_refreshes_are_counted(redis_client: redis.Redis) -> None:
    class Source:
        app_id = "wx_app"

        def fetch_token(self, force_refresh: bool = False) -> AccessToken:
            return AccessToken("T", 7200)

    TokenStore(redis_client, Source()).refresh()
    assert read(redis_client).counters["token_refreshes"] == 1


def test_queues_report_depth_and_how_long_their_head_has_waited(
    redis_client: redis.Redis,
) -> None:
    # LPUSH queues, workers take from the right: the oldest is at the right end.
    redis_client.lpush(MESSAGES_QUEUE, message_envelope("m1", 940.0))
    redis_client.lpush(MESSAGES_QUEUE, message_envelope("m2", 990.0))
    snap = read(redis_client, now=1000.0)
    assert snap.queues[MESSAGES_QUEUE] == (2, 60.0)
    assert snap.queues[CAMPAIGNS_QUEUE] == (0, 0.0)


def test_the_quota_pause_and_the_breaker_state_are_read(redis_client: redis.Redis) -> None:
    snap = read(redis_client)
    assert (snap.quota_paused, snap.circuit_open) == (False, False)
    redis_client.set(account_key(PREFIX, "wx_app", "quota"), json.dumps({"errmsg": "q"}))
    redis_client.hset(account_key(PREFIX, "wx_app", "breaker"), "state", "open")
    snap = read(redis_client)
    assert (snap.quota_paused, snap.circuit_open) == (True, True)
    assert read(redis_client, app_id="").quota_paused is None


def test_buckets_stored_under_older_bounds_count_in_the_next_bound_above(
    redis_client: redis.Redis,
) -> None:
    redis_client.hset(metrics_key(PREFIX, "send_latency"), mapping={"0.3": 2, "0.05": 1})
    latency, _ = read(redis_client).histograms["send_latency"]
    assert [count for _, count in latency][:4] == [1, 1, 1, 3]
    assert latency[-1] == ("+Inf", 3)


def test_a_bucket_is_the_lowest_bound_not_below_the_value() -> None:
    assert SEND_LATENCY.field(0.05) == "0.05"
    assert SEND_LATENCY.field(0.051) == "0.1"
    assert SEND_LATENCY.field(601) == "+Inf"
    tally = Tally()
    tally.observe(SEND_LATENCY, -1.0)  # clocks of two hosts: never a negative duration
    tally.observe(SEND_LATENCY, 0.5)
    assert tally.lua_args() == [3, 1, "0.05", "1", 1, "sum", "0.5", 1, "0.5", "1"]
    assert tally.lua_args() == [0]  # taken once
