"""A task's log lines name its task, its message or campaign, its attempt and its trace."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import responses

from notifier import logs
from notifier.broker.app import app
from notifier.store.admission import Admission
from notifier.store.campaigns import CampaignStore
from notifier.store.deferred import DeferredChunks
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.tokens import TokenStore
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.campaigns import CampaignSender
from notifier.worker.sender import Sender

BASE = "https://wechat.test"
SEND = f"{BASE}/cgi-bin/message/template/send"
TOKEN = f"{BASE}/cgi-bin/stable_token"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MESSAGE = {"touser": "oUser0001", "template_id": "T", "data": {"k": {"value": "v"}}}


@pytest.fixture
def wechat() -> WeChatClient:
    return WeChatClient(Credentials(BASE, "wx_app", "secret", "stable", 0.5, 0.5))


@pytest.fixture
def admission(redis_client: redis.Redis) -> Admission:
    return Admission(redis_client, idempotency_ttl=3600, retention=3600)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The worker's lines as JSON, as LOG_FORMAT=json writes them."""
    stream = io.StringIO()
    logger = logging.getLogger("notifier.worker")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.setLevel(logging.INFO)
    logs.install(logger, fmt="json", role="worker")
    yield stream
    logger.handlers = []
    logger.setLevel(logging.NOTSET)
    logs.start()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_task_binds_its_id_and_its_work_while_it_runs() -> None:
    def fields(work: dict[str, Any]) -> dict[str, Any]:
        return logs.bound()

    bound = app.task(name="tests.bound", shared=False)(fields)  # run eagerly, signals and all
    try:
        message = bound.apply(({"id": "m1"},), task_id="t1").get()
        chunk = bound.apply(({"batch": "b1", "chunk": 3},), task_id="b1.3").get()
    finally:
        app.tasks.pop("tests.bound")
    assert message == {"task_id": "t1", "message_id": "m1"}
    assert chunk == {"task_id": "b1.3", "campaign_id": "b1"}
    assert logs.bound() == {}, "cleared once the task has run"


@responses.activate
def test_a_send_logs_its_attempt_and_trace_and_wechat_gets_neither(
    redis_client: redis.Redis, wechat: WeChatClient, admission: Admission, json_lines: io.StringIO
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    send = responses.post(SEND, json={"errcode": 0, "errmsg": "ok", "msgid": 7})
    message_id = admission.message("w1", b"{}", MESSAGE, trace=TRACE).id
    state = MessageState(redis_client)
    sender = Sender(wechat, TokenStore(redis_client, wechat), state,
                    QuotaGate(redis_client, "wx_app"), claim_seconds=30)  # fmt: skip
    logs.start(task_id=message_id, message_id=message_id)  # as the task's start binds them
    assert sender.deliver({"id": message_id}, last_attempt=False) == 7
    body = json.loads(send.calls[0].request.body or b"")
    assert set(body) == {"touser", "template_id", "data", "client_msg_id"}
    [sent] = [line for line in lines(json_lines) if "sent" in line["message"]]
    assert (sent["message_id"], sent["task_id"], sent["trace_id"], sent["attempt"]) == (
        message_id, message_id, TRACE, 1,
    )  # fmt: skip
    assert sent["role"] == "worker"


@responses.activate
def test_a_failed_send_logs_its_errcode(
    redis_client: redis.Redis, wechat: WeChatClient, admission: Admission, json_lines: io.StringIO
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": -1, "errmsg": "system busy"})
    message_id = admission.message("w1", b"{}", MESSAGE, trace=TRACE).id
    sender = Sender(wechat, TokenStore(redis_client, wechat), MessageState(redis_client),
                    QuotaGate(redis_client, "wx_app"), claim_seconds=30)  # fmt: skip
    with pytest.raises(Exception, match="system busy"):
        sender.deliver({"id": message_id}, last_attempt=False)
    [retried] = [line for line in lines(json_lines) if "retried" in line["message"]]
    assert (retried["errcode"], retried["attempt"], retried["trace_id"]) == (-1, 1, TRACE)


@responses.activate
def test_a_campaign_chunk_logs_the_campaign_s_trace(
    redis_client: redis.Redis, wechat: WeChatClient, admission: Admission, json_lines: io.StringIO
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 40003, "errmsg": "invalid openid"})
    recipients = [{"touser": "oPerson0001"}]
    campaign = {"template_id": "T", "data": {"k": {"value": "v"}}, "recipients": recipients}
    campaign_id = admission.campaign("w2", b"{}", campaign, trace=TRACE).id
    store = CampaignStore(redis_client, 3600)
    admission_record = store.admission(campaign_id)
    assert admission_record is not None and admission_record[1] == TRACE
    sender = CampaignSender(wechat, TokenStore(redis_client, wechat), store,
                            QuotaGate(redis_client, "wx_app"), DeferredChunks(redis_client))  # fmt: skip
    logs.start(task_id=f"{campaign_id}.0", campaign_id=campaign_id)
    chunk = sender.resolve({"batch": campaign_id, "chunk": 0})
    assert chunk is not None
    assert sender.deliver(chunk, attempt=0, last_attempt=False) == []  # failed: 40003
    assert (logs.bound()["trace_id"], logs.bound()["attempt"]) == (TRACE, 1)
    sender.settle(chunk, "dead", -1, "busy", attempt=2)
    [line] = lines(json_lines)
    assert (line["campaign_id"], line["trace_id"]) == (campaign_id, TRACE)
    assert (line["errcode"], line["attempt"]) == (-1, 3)
