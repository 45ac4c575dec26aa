"""POST /v1/batches/{id}/replay: bearer, 404, 202 with how many, the include_failed flag."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from notifier.config import Settings
from notifier.store.campaigns import CampaignStore, Outcome, Settled
from notifier.store.keys import PREFIX, campaign_key
from notifier.web.app import create_app
from tests.conftest import QueueView

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAMPAIGN_ID = "e" * 32
URL = f"/v1/batches/{CAMPAIGN_ID}/replay"


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    return create_app(replace(settings, api_tokens=(TOKEN,))).test_client()


@pytest.fixture
def failed(redis_client: redis.Redis) -> None:
    """A finished campaign of 3: one sent, one dead, one failed by a send's errcode."""
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), mapping={"state": "sending",
                      "template_id": "TPL", "count": 3, "chunks": 1, "created": 1.0})  # fmt: skip
    chunk: dict[str, Any] = {"batch": CAMPAIGN_ID, "template_id": "TPL",
                             "data": {"k": {"value": "v"}}}  # fmt: skip
    CampaignStore(redis_client, 3600).record_many(CAMPAIGN_ID, [
        Settled(0, Outcome("sent", 1, 11)),
        Settled(1, Outcome("dead", 5, None, -1), "oDead00001", "system busy", None),
        Settled(2, Outcome("failed", 1, None, 40037), "oFail00002", "invalid template_id", None),
    ], shared=chunk)  # fmt: skip


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"}])
def test_a_replay_needs_a_known_bearer_token(
    client: FlaskClient, failed: None, headers: dict[str, str], redis_client: redis.Redis
) -> None:
    response = client.post(URL, headers=headers)
    assert response.status_code == 401
    assert QueueView(redis_client, "notifier.campaigns").tasks == []


@pytest.mark.parametrize("campaign_id", ["f" * 32, "not-a-campaign", "E" * 32])
def test_an_unknown_campaign_is_404(client: FlaskClient, campaign_id: str) -> None:
    response = client.post(f"/v1/batches/{campaign_id}/replay", headers=AUTH)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_replay_answers_202_with_how_many_and_a_second_queues_none(
    client: FlaskClient, failed: None, redis_client: redis.Redis
) -> None:
    response = client.post(URL, headers=AUTH)
    assert response.status_code == 202
    assert response.get_json() == {"batch_id": CAMPAIGN_ID, "queued": 1}
    assert client.post(URL, headers=AUTH).get_json() == {"batch_id": CAMPAIGN_ID, "queued": 0}
    published = QueueView(redis_client, "notifier.campaigns").published
    assert [r[1] for c in published for r in c["recipients"]] == ["oDead00001"]
    status = client.get(f"/v1/batches/{CAMPAIGN_ID}", headers=AUTH).get_json()
    assert (status["state"], status["finished_at"]) == ("sending", None)
    assert (status["counts"]["dead"], status["counts"]["queued"]) == (0, 1)


def test_the_body_flag_replays_failed_recipients_too(
    client: FlaskClient, failed: None, redis_client: redis.Redis
) -> None:
    flagged = client.post(URL, headers=AUTH, json={"include_failed": True})
    assert flagged.status_code == 202 and flagged.get_json()["queued"] == 2
    assert client.post(URL, headers=AUTH, json={"include_failed": True}).get_json()["queued"] == 0
    assert client.post(URL, headers=AUTH, json={}).get_json()["queued"] == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"include_failed": "yes"}', "application/json", 400),
        (b'{"include_failed": true, "all": 1}', "application/json", 400),
        (b"[true]", "application/json", 400),
        (b"{", "application/json", 400),
        (b'{"include_failed": true}', "text/plain", 415),
    ],
)
def test_a_bad_body_is_refused_and_replays_nothing(
    client: FlaskClient, failed: None, redis_client: redis.Redis, body: bytes,
    content_type: str, status: int,
) -> None:  # fmt: skip
    response = client.post(URL, headers=AUTH, data=body, content_type=content_type)
    assert response.status_code == status
    assert QueueView(redis_client, "notifier.campaigns").tasks == []
