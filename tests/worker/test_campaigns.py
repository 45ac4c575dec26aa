"""The chunk sender's per-recipient outcomes, receipts and the quota's deferred chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
import responses

from notifier.broker.queues import CAMPAIGNS_QUEUE
from notifier.errors import PermanentError, TransientError
from notifier.store.campaigns import CampaignStore, Outcome, Settled
from notifier.store.deferred import DeferredChunks
from notifier.store.keys import PREFIX, campaign_key, msgid_key
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.tokens import TokenStore
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.campaigns import CampaignSender
from tests.conftest import QueueView

BASE = "https://wechat.test"
SEND = f"{BASE}/cgi-bin/message/template/send"
TOKEN = f"{BASE}/cgi-bin/stable_token"
CAMPAIGN_ID = "b" * 32


@pytest.fixture
def store(redis_client: redis.Redis) -> CampaignStore:
    # As admission leaves a batch: its record, its chunks on the queue.
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), mapping={"state": "queued", "template_id": "TPL",
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
    redis_client.delete(campaign_key(PREFIX, CAMPAIGN_ID))
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
    assert redis_client.get(msgid_key(PREFIX, 777)) == f"{CAMPAIGN_ID}-0".encode()
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
    assert redis_client.get(msgid_key(PREFIX, 778, "early_receipt")) is None  # used up
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


@responses.activate
def test_a_replayed_chunk_sends_only_its_dead_recipients_as_first_sent_and_finishes(
    campaigns: CampaignSender, store: CampaignStore, redis_client: redis.Redis
) -> None:
    responses.post(TOKEN, json={"access_token": "A", "expires_in": 7200})
    responses.post(SEND, json={"errcode": 0, "msgid": 1})
    responses.post(SEND, json={"errcode": 43019, "errmsg": "blacklisted"})
    responses.post(SEND, json={"errcode": -1, "errmsg": "busy"})
    chunk = {**CHUNK, "chunk": 0}
    assert campaigns.deliver(chunk, attempt=4, last_attempt=True) == []
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None
    assert (summary["state"], summary["counts"]["dead"]) == ("finished", 2)
    assert store.replay(CAMPAIGN_ID) == 2  # Carol and Dave; Bob's refusal is permanent
    (ref,) = QueueView(redis_client, CAMPAIGNS_QUEUE).tasks
    responses.post(SEND, json={"errcode": 0, "msgid": 5})
    resolved = campaigns.resolve(ref)
    assert resolved is not None
    assert campaigns.deliver(resolved, attempt=0, last_attempt=False) == []
    sends = [json.loads(c.request.body or b"") for c in responses.calls
             if "template/send" in str(c.request.url)][-2:]  # fmt: skip
    assert [(s["touser"], s["client_msg_id"]) for s in sends] == [
        ("oCarol0001", f"{CAMPAIGN_ID}-2"), ("oDave00001", f"{CAMPAIGN_ID}-3")]  # fmt: skip
    assert sends[0]["data"] == {"k": {"value": "shared"}, **CHUNK["recipients"][2][2]}
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None
    assert (summary["state"], summary["counts"]["sent"], summary["counts"]["dead"]) == (
        "finished", 3, 0)  # fmt: skip


@responses.activate
def test_a_chunk_of_a_cancelled_campaign_sends_nobody(
    campaigns: CampaignSender, store: CampaignStore
) -> None:
    assert store.cancel(CAMPAIGN_ID)
    assert campaigns.deliver({**CHUNK, "chunk": 0}, attempt=0, last_attempt=False) == []
    assert len(responses.calls) == 0
    summary = store.summary(CAMPAIGN_ID)
    assert summary is not None and summary["state"] == "cancelled"
