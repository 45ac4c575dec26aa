"""One delivery attempt: token refresh once, permanent errors once, states recorded, no resends."""

from __future__ import annotations

import json

import pytest
import redis
import responses

from notifier.broker.queues import MESSAGES_QUEUE
from notifier.errors import PermanentError, TransientError
from notifier.store.keys import PREFIX, account_key, unfinished_key
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.tokens import TokenStore
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.sender import AlreadyClaimed, Sender

BASE = "https://wechat.test"
SEND = f"{BASE}/cgi-bin/message/template/send"
TOKEN = f"{BASE}/cgi-bin/stable_token"
PAYLOAD = {
    "id": "m1",
    "touser": "oUser0001",
    "template_id": "T",
    "data": {"k": {"value": "v"}},
    "client_msg_id": "m1",
}


@pytest.fixture
def state(redis_client: redis.Redis) -> MessageState:
    state = MessageState(redis_client)
    state.record_queued("m1")
    return state


@pytest.fixture
def sender(redis_client: redis.Redis, state: MessageState) -> Sender:
    client = WeChatClient(Credentials(BASE, "wx_app", "secret", "stable", 0.5, 0.5))
    quota = QuotaGate(redis_client, "wx_app")
    return Sender(client, TokenStore(redis_client, client), state, quota, claim_seconds=30)


def ok(msgid: int = 7) -> dict[str, object]:
    return {"errcode": 0, "errmsg": "ok", "msgid": msgid}


@responses.activate
def test_a_send_is_recorded_as_sent_with_its_msgid(sender: Sender, state: MessageState) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    send = responses.post(SEND, json=ok(42))
    assert sender.deliver(PAYLOAD, last_attempt=False) == 42
    record = state.get("m1")
    assert record is not None
    assert (record.status, record.msgid, record.attempts) == ("sent", 42, 1)
    assert [h["status"] for h in record.history] == ["queued", "sent"]
    sent = json.loads(send.calls[0].request.body)
    assert "id" not in sent and sent["client_msg_id"] == "m1"


@responses.activate
def test_a_stale_token_is_refreshed_once_and_the_message_resent_once(sender: Sender) -> None:
    responses.post(TOKEN, json={"access_token": "OLD", "expires_in": 7200})
    responses.post(TOKEN, json={"access_token": "OLD", "expires_in": 7000})
    responses.post(TOKEN, json={"access_token": "NEW", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 40001, "errmsg": "invalid credential"})
    responses.post(SEND, json=ok())
    assert sender.deliver(PAYLOAD, last_attempt=False) == 7
    sends = [c for c in responses.calls if "template/send" in str(c.request.url)]
    assert [str(c.request.url).rsplit("=", 1)[1] for c in sends] == ["OLD", "NEW"]
    forced = [
        json.loads(c.request.body or b"")["force_refresh"]
        for c in responses.calls
        if "stable" in str(c.request.url)
    ]
    assert forced == [False, False, True]


@responses.activate
def test_a_token_refused_twice_backs_off_instead_of_looping(
    sender: Sender, state: MessageState
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(TOKEN, json={"access_token": "B", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 40001, "errmsg": "invalid credential"})
    with pytest.raises(TransientError):
        sender.deliver(PAYLOAD, last_attempt=False)
    assert len([c for c in responses.calls if "template/send" in str(c.request.url)]) == 2
    assert state.status("m1") == "retrying"


@responses.activate
def test_a_permanent_error_is_one_attempt_and_failed(sender: Sender, state: MessageState) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    send = responses.post(SEND, json={"errcode": 43004, "errmsg": "require subscribe"})
    with pytest.raises(PermanentError):
        sender.deliver(PAYLOAD, last_attempt=False)
    record = state.get("m1")
    assert record is not None
    assert (record.status, record.errcode, record.errmsg) == ("failed", 43004, "require subscribe")
    assert send.call_count == 1
    # A redelivery of the same task does not try again.
    assert sender.deliver(PAYLOAD, last_attempt=False) is None
    assert send.call_count == 1


@responses.activate
def test_transient_errors_are_retrying_then_dead_on_the_last_attempt(
    sender: Sender, state: MessageState
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": -1, "errmsg": "system busy"})
    with pytest.raises(TransientError):
        sender.deliver(PAYLOAD, last_attempt=False)
    assert state.status("m1") == "retrying"
    with pytest.raises(TransientError):
        sender.deliver(PAYLOAD, last_attempt=True)
    record = state.get("m1")
    assert record is not None
    assert (record.status, record.attempts, record.errcode) == ("dead", 2, -1)


@responses.activate
def test_daily_quota_pauses_the_account_and_defers_without_calling_wechat(
    sender: Sender, state: MessageState, redis_client: redis.Redis
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    send = responses.post(
        SEND, json={"errcode": 45009, "errmsg": "reach max api daily quota limit"}
    )
    assert sender.deliver(PAYLOAD, last_attempt=False) is None
    assert state.status("m1") == "deferred"
    assert state.ids(state.deferred_index) == ["m1"]
    state.record_queued("m2")
    assert (
        sender.deliver({**PAYLOAD, "id": "m2", "client_msg_id": "m2"}, last_attempt=False) is None
    )
    assert state.status("m2") == "deferred"
    assert send.call_count == 1
    assert redis_client.ttl(account_key(PREFIX, "wx_app", "quota")) > 0


@responses.activate
def test_a_message_already_sent_is_not_sent_again(sender: Sender, state: MessageState) -> None:
    state.record_sent("m1", 5)
    assert sender.deliver(PAYLOAD, last_attempt=False) is None
    assert len(responses.calls) == 0


@responses.activate
def test_a_message_claimed_by_another_worker_is_left_to_it(
    sender: Sender, state: MessageState
) -> None:
    assert state.begin_attempt("m1", 30)[0] == 1  # another worker took it
    with pytest.raises(AlreadyClaimed) as info:
        sender.deliver(PAYLOAD, last_attempt=True)
    assert 29 <= info.value.retry_in <= 31  # look again once the claim has expired
    assert len(responses.calls) == 0
    assert state.status("m1") == "queued"


@responses.activate
def test_a_task_carrying_only_the_id_sends_the_payload_kept_in_the_record(
    sender: Sender, state: MessageState, redis_client: redis.Redis
) -> None:
    state.record_queued("m3", {**PAYLOAD, "id": "m3", "client_msg_id": "m3"})
    redis_client.zadd(unfinished_key(MESSAGES_QUEUE), {"m3": 1.0})
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    send = responses.post(SEND, json=ok(9))
    assert sender.deliver({"id": "m3"}, last_attempt=False) == 9
    assert json.loads(send.calls[0].request.body)["touser"] == "oUser0001"
    # Final: no longer the reconciler's, and the payload is dropped with it.
    assert redis_client.zcard(unfinished_key(MESSAGES_QUEUE)) == 0
    record = state.get("m3")
    assert record is not None and record.payload is None
