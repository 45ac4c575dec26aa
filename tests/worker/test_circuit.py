"""The breaker in the senders: only transient failures count, an open breaker touches neither
WeChat nor the retry budget, and the tasks wait for it under their own ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import responses

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.errors import (
    AccountError,
    DailyQuotaError,
    MinuteQuotaError,
    PermanentError,
    TokenError,
    TransientError,
    WeChatError,
)
from notifier.store.breaker import Breaker, BreakerPolicy
from notifier.store.campaigns import CampaignStore
from notifier.store.deferred import DeferredChunks
from notifier.store.keys import PREFIX, campaign_key, unfinished_key
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.tokens import TokenStore
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker import tasks
from notifier.worker.campaigns import CampaignSender
from notifier.worker.circuit import JITTER_SHARE, Circuit, CircuitOpen
from notifier.worker.sender import Sender
from tests.conftest import Clock

BASE = "https://wechat.test"
SEND = f"{BASE}/cgi-bin/message/template/send"
TOKEN = f"{BASE}/cgi-bin/stable_token"
PAYLOAD = {"id": "m1", "touser": "oUser0001", "template_id": "T", "data": {}, "client_msg_id": "m1"}
POLICY = BreakerPolicy(min_calls=3, error_rate=0.5, window=10, sleep=30, trial_seconds=20)
CAMPAIGN_ID = "c" * 32


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(redis_client: redis.Redis, clock: Clock) -> Breaker:
    return Breaker(redis_client, "wx_app", POLICY, clock=clock)


@pytest.fixture
def wechat() -> WeChatClient:
    return WeChatClient(Credentials(BASE, "wx_app", "secret", "stable", 0.5, 0.5))


@pytest.fixture
def state(redis_client: redis.Redis) -> MessageState:
    state = MessageState(redis_client)
    state.record_queued("m1")
    redis_client.zadd(unfinished_key(MESSAGES_QUEUE), {"m1": 1.0})
    return state


@pytest.fixture
def sender(
    redis_client: redis.Redis, wechat: WeChatClient, state: MessageState, breaker: Breaker
) -> Sender:
    tokens, quota = TokenStore(redis_client, wechat), QuotaGate(redis_client, "wx_app")
    return Sender(wechat, tokens, state, quota, claim_seconds=30, circuit=Circuit(breaker))


def open_it(breaker: Breaker) -> None:
    circuit = Circuit(breaker)
    for _ in range(POLICY.min_calls - 1):
        with pytest.raises(TransientError):
            circuit.call(circuit.ask(), failing(TransientError(-1, "busy")))
    with pytest.raises(CircuitOpen):
        circuit.call(circuit.ask(), failing(TransientError(-1, "busy")))
    assert breaker.status().open


def failing(error: WeChatError) -> Callable[[], int]:
    def send() -> int:
        raise error

    return send


@pytest.mark.parametrize(
    "error",
    [
        PermanentError(43004, "require subscribe"),
        AccountError(40164, "invalid ip"),
        TokenError(40001, "invalid credential"),
        DailyQuotaError(45009, "daily quota"),
        MinuteQuotaError(45011, "minute quota"),
    ],
    ids=lambda e: str(e.errcode),
)
def test_only_transient_failures_count(breaker: Breaker, error: WeChatError) -> None:
    circuit = Circuit(breaker)
    for _ in range(3 * POLICY.min_calls):
        with pytest.raises(type(error)):
            circuit.call(circuit.ask(), failing(error))
    assert not breaker.status().open  # WeChat answered: each counts as a success


def test_the_failure_that_opens_it_says_how_long_to_wait(breaker: Breaker) -> None:
    circuit = Circuit(breaker)
    for _ in range(POLICY.min_calls - 1):
        with pytest.raises(TransientError):
            circuit.call(circuit.ask(), failing(TransientError(-1002, "HTTP 503")))
    with pytest.raises(CircuitOpen) as info:
        circuit.call(circuit.ask(), failing(TransientError(-1002, "HTTP 503")))
    assert info.value.retry_in == POLICY.sleep
    assert info.value.failure is not None and info.value.failure.errcode == -1002
    assert POLICY.sleep <= info.value.countdown() <= POLICY.sleep * (1 + JITTER_SHARE) + 1


@responses.activate
def test_an_open_breaker_sends_nothing_claims_nothing_and_marks_the_message_seen(
    sender: Sender, state: MessageState, breaker: Breaker, redis_client: redis.Redis
) -> None:
    open_it(breaker)
    with pytest.raises(CircuitOpen) as info:
        sender.deliver(PAYLOAD, last_attempt=True)
    assert 0 < info.value.retry_in <= POLICY.sleep
    assert len(responses.calls) == 0
    record = state.get("m1")
    assert record is not None and (record.status, record.attempts) == ("queued", 0)
    assert redis_client.zscore(unfinished_key(MESSAGES_QUEUE), "m1") > 1.0  # seen just now


@responses.activate
def test_a_failure_that_opens_it_waits_even_on_the_last_attempt(
    sender: Sender, state: MessageState, breaker: Breaker
) -> None:
    circuit = Circuit(breaker)
    for _ in range(POLICY.min_calls - 1):
        with pytest.raises(TransientError):
            circuit.call(circuit.ask(), failing(TransientError(-1, "busy")))
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": -1, "errmsg": "system busy"})
    with pytest.raises(CircuitOpen):
        sender.deliver(PAYLOAD, last_attempt=True)
    record = state.get("m1")
    assert record is not None
    assert (record.status, record.errcode) == ("retrying", -1)  # not dead


@responses.activate
def test_a_trial_that_sends_nothing_is_given_back(
    sender: Sender, state: MessageState, breaker: Breaker, redis_client: redis.Redis, clock: Clock
) -> None:
    open_it(breaker)
    clock.advance(POLICY.sleep)
    state.record_sent("m1", 5)  # a second copy: nothing to send
    assert sender.deliver(PAYLOAD, last_attempt=False) is None
    assert len(responses.calls) == 0
    assert breaker.status().state == "half_open"
    assert Breaker(redis_client, "wx_app", POLICY, clock=clock).ask().trial  # the next caller's


@responses.activate
def test_a_chunk_stops_where_the_breaker_opened_and_keeps_what_it_sent(
    redis_client: redis.Redis, wechat: WeChatClient, breaker: Breaker
) -> None:
    people = [[i, f"oPerson{i:04d}", None] for i in range(6)]
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), mapping={"state": "queued",
                      "template_id": "T", "count": 6, "chunks": 1, "created": 1.0})  # fmt: skip
    chunk = {"batch": CAMPAIGN_ID, "template_id": "T", "data": {}, "recipients": people}
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID, "chunks"), "0", json.dumps(chunk))
    redis_client.zadd(unfinished_key(CAMPAIGNS_QUEUE), {f"{CAMPAIGN_ID}.0": 1.0})
    store = CampaignStore(redis_client, 3600)
    campaigns = CampaignSender(wechat, TokenStore(redis_client, wechat), store,
                               QuotaGate(redis_client, "wx_app"), DeferredChunks(redis_client),
                               circuit=Circuit(breaker))  # fmt: skip
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 0, "msgid": 1})
    send = responses.post(SEND, json={"errcode": -1, "errmsg": "busy"})
    resolved = campaigns.resolve({"batch": CAMPAIGN_ID, "chunk": 0})
    assert resolved is not None
    with pytest.raises(CircuitOpen) as info:
        campaigns.deliver(resolved, attempt=2, last_attempt=True)
    assert send.call_count == 2  # 2 of 3 calls failed: open, and nothing more is tried
    assert [r[0] for r in info.value.remaining] == [2, 3, 4, 5]
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None
    # On its last attempt, the failure before the breaker opened is dead; the one that
    # opened it waits with the rest.
    assert {k: v for k, v in summary["counts"].items() if v} == {"sent": 1, "dead": 1,
                                                                "retrying": 1, "queued": 3}  # fmt: skip
    assert redis_client.zscore(unfinished_key(CAMPAIGNS_QUEUE), f"{CAMPAIGN_ID}.0") > 1.0


@pytest.fixture
def republished(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    later: list[tuple[Any, ...]] = []
    for task in (tasks.send_template, tasks.send_chunk):
        monkeypatch.setattr(task, "apply_async", lambda *a, **kw: later.append((a, kw)))
    return later


def run(task: Any, arg: dict[str, Any], retries: int) -> Any:
    task.push_request(id="t1", retries=retries)
    try:
        return task.run(arg)
    finally:
        task.pop_request()


def test_a_waiting_message_is_published_again_keeping_its_retry_count(
    monkeypatch: pytest.MonkeyPatch, republished: list[tuple[Any, ...]]
) -> None:
    class Open:
        def deliver(self, payload: dict[str, Any], last_attempt: bool) -> int:
            raise CircuitOpen(20)

    monkeypatch.setattr(tasks, "worker_context", lambda: SimpleNamespace(sender=Open()))
    assert run(tasks.send_template, {"id": "m1"}, retries=3) is None
    ((args, options),) = republished
    assert args == (({"id": "m1"},),)
    assert (options["task_id"], options["retries"]) == ("t1", 3)
    assert 20 <= options["countdown"] <= 20 * (1 + JITTER_SHARE) + 1


def test_a_waiting_chunk_is_published_again_with_what_it_still_owes(
    monkeypatch: pytest.MonkeyPatch, republished: list[tuple[Any, ...]]
) -> None:
    class Open:
        def resolve(self, ref: dict[str, Any]) -> dict[str, Any]:
            return ref

        def deliver(self, chunk: dict[str, Any], attempt: int, last_attempt: bool) -> list[Any]:
            raise CircuitOpen(10, remaining=[[2, "oB", None]])

    monkeypatch.setattr(tasks, "worker_context", lambda: SimpleNamespace(campaigns=Open()))
    whole = {"batch": CAMPAIGN_ID, "recipients": [[1, "oA", None], [2, "oB", None]]}
    assert run(tasks.send_chunk, whole, retries=2) == 0
    assert run(tasks.send_chunk, {"batch": CAMPAIGN_ID, "chunk": 0}, retries=2) == 0
    assert [a for a, _ in republished] == [
        (({**whole, "recipients": [[2, "oB", None]]},),),
        (({"batch": CAMPAIGN_ID, "chunk": 0},),),
    ]
    assert all(
        kw["retries"] == 2 and 10 <= kw["countdown"] <= 10 * (1 + JITTER_SHARE) + 1
        for _, kw in republished
    )


def test_failed_token_fetches_count_against_wechat_and_cached_ones_say_nothing(
    breaker: Breaker,
) -> None:
    circuit = Circuit(breaker)
    for _ in range(10 * POLICY.min_calls):
        assert circuit.fetch(circuit.ask(), lambda: "cached-token") == "cached-token"
    assert not breaker.status().open  # no call made: no success counted to dilute failures
    for _ in range(POLICY.min_calls - 1):
        with pytest.raises(TransientError):
            circuit.fetch(circuit.ask(), failing(TransientError(-1, "token API down")))
    with pytest.raises(CircuitOpen):
        circuit.fetch(circuit.ask(), failing(TransientError(-1, "token API down")))
    assert breaker.status().open


@responses.activate
def test_a_token_api_outage_makes_a_message_wait_not_die(
    sender: Sender, state: MessageState, breaker: Breaker
) -> None:
    responses.post(TOKEN, json={"errcode": -1, "errmsg": "system busy"})
    for _ in range(POLICY.min_calls - 1):
        with pytest.raises(TransientError):
            sender.deliver(PAYLOAD, last_attempt=False)
    with pytest.raises(CircuitOpen):
        sender.deliver(PAYLOAD, last_attempt=True)  # its last attempt, yet it waits
    assert state.status("m1") == "retrying"
    assert not any(call.request.url == SEND for call in responses.calls)


def test_a_breaker_redis_cannot_answer_lets_sends_through_and_keeps_their_result(
    clock: Clock,
) -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    circuit = Circuit(Breaker(gone, "wx_app", POLICY, clock=clock))
    clock.advance(5)  # past any cached verdict
    assert circuit.call(circuit.ask(), lambda: 42) == 42


def test_a_wait_is_never_longer_than_the_sleep_window(
    redis_client: redis.Redis, breaker: Breaker, clock: Clock
) -> None:
    open_it(breaker)
    behind = Clock()
    behind.now = clock() - 600  # a host whose clock runs ten minutes slow
    slow = Breaker(redis_client, "wx_app", POLICY, clock=behind)
    with pytest.raises(CircuitOpen) as info:
        Circuit(slow).ask()
    assert info.value.retry_in <= POLICY.sleep
