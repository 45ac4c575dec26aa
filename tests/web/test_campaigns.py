"""Campaign intake: validation, chunking, idempotency and limits."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_SIZE, chunk_payloads
from notifier.broker.wake import wake_key
from notifier.config import Settings
from notifier.store.campaign_ids import split_recipient_id
from notifier.store.campaigns import CampaignStore
from notifier.store.keys import PREFIX, campaign_key, digest_key
from notifier.web.app import create_app
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
    assert redis_client.keys(campaign_key(PREFIX, "*")) == []
    assert redis_client.keys(digest_key(PREFIX, "idempotency", "*")) == []


def test_a_repeated_batch_is_answered_as_before_and_queued_once(
    client: FlaskClient, chunks: QueueView, redis_client: redis.Redis
) -> None:
    first = client.post("/v1/messages/batch", **signed(batch(120), msg_id="camp-1"))
    again = client.post("/v1/messages/batch", **signed(batch(120), msg_id="camp-1"))
    assert first.get_json() == again.get_json()
    assert len(chunks.published) == 2
    assert redis_client.llen(wake_key(CAMPAIGNS_QUEUE)) == 2  # a token per chunk, once
    assert redis_client.ttl(wake_key(CAMPAIGNS_QUEUE)) > 0


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
