"""Campaign intake, chunking, and the chunk sender's per-recipient outcomes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import redis
import responses
from flask.testing import FlaskClient

from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_SIZE, chunk_payloads
from notifier.config import Settings
from notifier.errors import PermanentError, TransientError
from notifier.store.campaigns import CampaignStore, Outcome, Settled, split_recipient_id
from notifier.store.deferred import DeferredChunks
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.tokens import TokenStore
from notifier.web.app import create_app
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.campaigns import CampaignSender
from tests.conftest import QueueView, signed

BASE = "https://wechat.test"
SEND = f"{BASE}/cgi-bin/message/template/send"
TOKEN = f"{BASE}/cgi-bin/stable_token"
CAMPAIGN_ID = "b" * 32


def batch(count: int, **extra: Any) -> dict[str, Any]:
    people = [{"touser": f"oPerson{i:06d}"} for i in range(count)]
    return {"template_id": "TPL", "data": {"k": {"value": "v"}}, "recipients": people, **extra}


@pytest.fixture
def chunks(redis_client: redis.Redis) -> QueueView:
    return QueueView(redis_client, "notifier.campaigns")


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    return create_app(settings).test_client()


def test_a_batch_is_queued_in_chunks_and_answered_with_its_id_and_count(
    client: FlaskClient, chunks: QueueView, redis_client: redis.Redis, settings: Settings
) -> None:
    response = client.post("/v1/messages/batch", **signed(batch(250)))
    assert response.status_code == 202
    answer = response.get_json()
    assert answer["count"] == 250 and answer["status"] == "queued"
    assert [len(c["recipients"]) for c in chunks.published] == [100, 100, 50]
    assert chunks.published[2]["recipients"][0][:2] == [200, "oPerson000200"]
    summary = CampaignStore(redis_client, 3600).summary(answer["batch_id"])
    assert summary is not None
    assert (summary["state"], summary["counts"]["queued"]) == ("queued", 250)


def test_every_bad_recipient_is_named_by_index_and_nothing_is_queued(
    client: FlaskClient, chunks: QueueView
) -> None:
    body = batch(20)
    body["recipients"][4]["touser"] = "no good"
    body["recipients"][17]["data"] = {"k": {"value": 3}}
    response = client.post("/v1/messages/batch", **signed(body))
    assert response.status_code == 400
    assert sorted(response.get_json()["errors"]["recipients"]) == ["17", "4"]
    assert chunks.published == []


@pytest.mark.parametrize("count", [0, 10_001])
def test_a_batch_must_hold_1_to_10000_recipients(client: FlaskClient, count: int) -> None:
    response = client.post("/v1/messages/batch", **signed(batch(count)))
    assert response.status_code == 400
    assert "recipients" in response.get_json()["errors"]


def test_a_recipient_without_any_data_is_refused(client: FlaskClient) -> None:
    response = client.post("/v1/messages/batch", **signed({**batch(2), "data": {}}))
    assert response.status_code == 400


def test_a_broker_failure_queues_nothing_of_the_batch(
    client: FlaskClient, chunks: QueueView, redis_client: redis.Redis
) -> None:
    chunks.down = True
    assert client.post("/v1/messages/batch", **signed(batch(150))).status_code == 503
    assert redis_client.keys("notifier:batch:*") == []
    assert redis_client.keys("notifier:idem:*") == []


def test_a_repeated_batch_is_answered_as_before_and_queued_once(
    client: FlaskClient, chunks: QueueView, redis_client: redis.Redis
) -> None:
    first = client.post("/v1/messages/batch", **signed(batch(120), msg_id="camp-1"))
    again = client.post("/v1/messages/batch", **signed(batch(120), msg_id="camp-1"))
    assert first.get_json() == again.get_json()
    assert len(chunks.published) == 2
    assert redis_client.llen("notifier.campaigns:wake") == 2  # a token per chunk, once
    assert redis_client.ttl("notifier.campaigns:wake") > 0


def test_batch_bodies_have_their_own_limit(settings: Settings, chunks: QueueView) -> None:
    small = replace(settings, max_batch_bytes=2048)
    client = create_app(small).test_client()
    assert client.post("/v1/messages/batch", **signed(batch(200))).status_code == 413


def test_a_queued_recipient_costs_under_100_bytes_of_task_payload() -> None:
    payloads = chunk_payloads(CAMPAIGN_ID, batch(1000))
    size = sum(len(json.dumps(p)) for p in payloads)
    # The Celery envelope adds about 1.2 KB a chunk, 12 B a recipient at CHUNK_SIZE 100.
    assert size / 1000 + 1200 / CHUNK_SIZE < 100


def test_recipient_ids_round_trip() -> None:
    assert split_recipient_id(f"{CAMPAIGN_ID}-42") == (CAMPAIGN_ID, 42)
    assert split_recipient_id("a" * 32) is None
    assert split_recipient_id(f"{CAMPAIGN_ID}-x") is None


@pytest.fixture
def store(redis_client: redis.Redis) -> CampaignStore:
    # As admission leaves a batch: its record, its chunks on the queue.
    redis_client.hset(f"notifier:batch:{CAMPAIGN_ID}", mapping={"state": "queued", "template_id": "TPL",
                      "count": 4, "chunks": 1, "created": 1.0})  # fmt: skip
    return CampaignStore(redis_client, 3600)


@pytest.fixture
def campaigns(redis_client: redis.Redis, store: CampaignStore) -> CampaignSender:
    wechat = WeChatClient(Credentials(BASE, "wx_app", "secret", "stable", 0.5, 0.5))
    quota = QuotaGate(redis_client, "wx_app")
    return CampaignSender(
        wechat, TokenStore(redis_client, wechat), store, quota, DeferredChunks(redis_client)
    )


CHUNK: dict[str, Any] = {
    "batch": CAMPAIGN_ID,
    "template_id": "TPL",
    "data": {"k": {"value": "shared"}},
    "recipients": [
        [0, "oAlice0001", None],
        [1, "blockedBob01", None],
        [2, "oCarol0001", {"k": {"value": "own"}}],
        [3, "oDave00001", None],
    ],
}


@responses.activate
def test_a_chunk_records_each_outcome_and_returns_only_transient_failures(
    campaigns: CampaignSender, store: CampaignStore
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 0, "msgid": 1})
    responses.post(SEND, json={"errcode": 43019, "errmsg": "blacklisted"})
    responses.post(SEND, json={"errcode": -1, "errmsg": "busy"})
    responses.post(SEND, json={"errcode": 0, "msgid": 4})
    again = campaigns.deliver(CHUNK, attempt=0, last_attempt=False)
    assert [r[0] for r in again] == [2]
    assert {k: v for k, v in _counts(store).items() if v} == {
        "sent": 2,
        "failed": 1,
        "retrying": 1,
    }
    bodies = [
        json.loads(c.request.body or b"")
        for c in responses.calls
        if "template/send" in str(c.request.url)
    ]
    assert bodies[2]["data"] == {"k": {"value": "own"}}
    assert bodies[0]["client_msg_id"] == f"{CAMPAIGN_ID}-0"
    assert len(bodies) == 4
    # A redelivery of the whole chunk sends only the one still pending.
    responses.post(SEND, json={"errcode": 0, "msgid": 3})
    assert campaigns.deliver(CHUNK, attempt=1, last_attempt=False) == []
    sends = [c for c in responses.calls if "template/send" in str(c.request.url)]
    assert len(sends) == 5 and json.loads(sends[-1].request.body or b"")["touser"] == "oCarol0001"
    assert _counts(store)["sent"] == 3


@responses.activate
def test_the_last_attempt_marks_transient_failures_dead(
    campaigns: CampaignSender, store: CampaignStore
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": -1, "errmsg": "busy"})
    assert campaigns.deliver(CHUNK, attempt=3, last_attempt=True) == []
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None
    assert summary["counts"]["dead"] == 4
    assert summary["failures"]["total"] == 4


def test_outcomes_written_twice_count_and_list_each_failure_once(store: CampaignStore) -> None:
    """A write whose reply was lost is sent again (redis-py retries on a connection error)."""
    settled = [
        Settled(1, Outcome("failed", 1, None, 43019), "blockedBob01", "blacklisted"),
        Settled(0, Outcome("sent", 1, 77), "oAlice0001"),
    ]
    store.record_many(CAMPAIGN_ID, settled)
    store.record_many(CAMPAIGN_ID, settled)
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None
    assert {k: v for k, v in summary["counts"].items() if v} == {
        "sent": 1,
        "failed": 1,
        "queued": 2,
    }
    assert summary["failures"]["total"] == 1
    assert [f["touser"] for f in summary["failures"]["items"]] == ["blockedBob01"]


@responses.activate
def test_chunks_of_an_expired_batch_send_nothing(
    campaigns: CampaignSender, store: CampaignStore, redis_client: redis.Redis
) -> None:
    redis_client.delete(f"notifier:batch:{CAMPAIGN_ID}")
    assert campaigns.deliver(CHUNK, attempt=0, last_attempt=False) == []
    assert len(responses.calls) == 0


@responses.activate
def test_the_daily_quota_parks_the_rest_of_the_chunk(
    campaigns: CampaignSender, store: CampaignStore, redis_client: redis.Redis
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 0, "msgid": 1})
    responses.post(SEND, json={"errcode": 45009, "errmsg": "daily quota"})
    assert campaigns.deliver(CHUNK, attempt=0, last_attempt=False) == []
    parked = DeferredChunks(redis_client)
    assert parked.count() == 1
    (raw,) = redis_client.lrange(parked.key, 0, -1)
    assert [r[0] for r in json.loads(raw)["recipients"]] == [1, 2, 3]
    assert _counts(store)["deferred"] == 3
    assert DeferredChunks(redis_client).release() == 3
    assert parked.count() == 0
    assert [len(c["recipients"]) for c in QueueView(redis_client, CAMPAIGNS_QUEUE).tasks] == [3]


@responses.activate
def test_a_token_the_account_cannot_get_settles_every_recipient_visibly(
    campaigns: CampaignSender, store: CampaignStore
) -> None:
    responses.post(TOKEN, json={"errcode": 40164, "errmsg": "invalid ip, not in whitelist"})
    with pytest.raises(PermanentError):
        campaigns.deliver(CHUNK, attempt=0, last_attempt=False)
    assert campaigns.settle(CHUNK, "failed", 40164, "invalid ip", 0) == 4
    counts = _counts(store)
    assert counts["failed"] == 4 and counts["queued"] == 0


@responses.activate
def test_a_token_api_outage_retries_the_whole_chunk(campaigns: CampaignSender) -> None:
    responses.post(TOKEN, status=503)
    assert [r[0] for r in campaigns.deliver(CHUNK, attempt=0, last_attempt=False)] == [0, 1, 2, 3]
    with pytest.raises(TransientError):
        campaigns.deliver(CHUNK, attempt=8, last_attempt=True)


@responses.activate
def test_a_campaign_receipt_marks_the_recipient_delivered(
    campaigns: CampaignSender, store: CampaignStore, redis_client: redis.Redis
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 0, "msgid": 777})
    campaigns.deliver(
        {**CHUNK, "recipients": CHUNK["recipients"][:1]}, attempt=0, last_attempt=False
    )
    assert redis_client.get("notifier:msgid:777") == f"{CAMPAIGN_ID}-0".encode()
    assert store.apply_receipt(CAMPAIGN_ID, 0, "delivered", "success")
    assert not store.apply_receipt(CAMPAIGN_ID, 0, "delivered", "success")
    counts = _counts(store)
    assert counts["delivered"] == 1 and counts["sent"] == 0


@responses.activate
def test_a_receipt_that_outruns_the_recorded_send_is_applied_with_it(
    campaigns: CampaignSender, store: CampaignStore, redis_client: redis.Redis
) -> None:
    # Outcomes are written every few sends; WeChat's receipt can land before that.
    MessageState(redis_client).keep_early_receipt(778, "failed", "user block")
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 0, "msgid": 777})
    responses.post(SEND, json={"errcode": 0, "msgid": 778})
    campaigns.deliver(
        {**CHUNK, "recipients": CHUNK["recipients"][2:]}, attempt=0, last_attempt=False
    )
    assert _status(store, 3) == "failed"
    assert _status(store, 2) == "sent"
    assert redis_client.get("notifier:receipt:778") is None  # used up
    assert _counts(store)["failed"] == 1


def _counts(store: CampaignStore) -> dict[str, int]:
    """The campaign's counts per status, as the batch status API gives them."""
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None
    counts: dict[str, int] = summary["counts"]
    return counts


def _status(store: CampaignStore, index: int) -> str:
    """One recipient's status, as the status API gives it."""
    view = store.recipient_view(CAMPAIGN_ID, index)
    assert view is not None
    return str(view["status"])


def test_a_final_outcome_is_never_undone_by_a_second_copy_of_a_chunk(store: CampaignStore) -> None:
    store.record(CAMPAIGN_ID, 0, Outcome("sent", 1, 7))
    store.record(CAMPAIGN_ID, 0, Outcome("retrying", 1, None, -1), "oAlice0001", "busy")
    outcome = store.outcome(CAMPAIGN_ID, 0)
    assert outcome is not None and outcome.status == "sent"
    assert _counts(store)["sent"] == 1 and _counts(store)["retrying"] == 0


def test_a_release_queues_only_what_was_parked_when_it_started(redis_client: redis.Redis) -> None:
    parked = DeferredChunks(redis_client)
    for number in range(3):
        parked.park({**CHUNK, "recipients": CHUNK["recipients"][number : number + 1]})

    again = DeferredChunks(redis_client)
    original = again._release

    def release_and_park_again(**kwargs: Any) -> Any:
        """Every chunk it queues is deferred again at once, as when the quota runs out."""
        moved = original(**kwargs)
        for _ in range(int(moved)):
            again.park({**CHUNK, "recipients": CHUNK["recipients"][:1]})
        return moved

    again._release = release_and_park_again
    assert again.release() == 3
    assert again.count() == 3  # parked anew, for the next release
