"""send_at at the intake, the scheduled status, and DELETE of what has not started."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.config import Settings
from notifier.store.keys import PREFIX, campaign_key
from notifier.store.schedule import Schedule
from notifier.web.app import create_app
from notifier.web.schema import CampaignSchema, MessageSchema, SendAt
from tests.conftest import GOOD, signed

TOKEN = "schedule-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    return create_app(replace(settings, api_tokens=(TOKEN,))).test_client()


def ahead(seconds: float, offset_hours: int = 8) -> str:
    """A send_at `seconds` from now, spelled in a +hh:00 offset."""
    zone = datetime.now(UTC).astimezone(timezone(timedelta(hours=offset_hours)))
    return (zone + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def errors(schema: Any, send_at: Any) -> list[str]:
    try:
        schema.load({**GOOD, "send_at": send_at})
    except Exception as exc:  # marshmallow's ValidationError
        return list(getattr(exc, "messages", {}).get("send_at", [str(exc)]))
    return []


@pytest.mark.parametrize(
    "send_at",
    [
        "2026-12-02T09:00:00",  # no offset
        "2026-12-02 09:00:00+08:00",
        "2026-12-02t09:00:00+08:00",
        "2026-12-02T09:00+08:00",
        "2026-12-02T09:00:00+0800",
        "2026-12-02T09:00:00+08:00\n",
        " 2026-12-02T09:00:00+08:00",
        "2026-12-02",
        "1796173200",
        "\uff12026-12-02T09:00:00+08:00",  # a full-width digit
    ],
)
def test_send_at_must_be_rfc_3339_with_an_offset_exactly(send_at: str) -> None:
    assert errors(MessageSchema(), send_at) == [
        'must be an RFC 3339 date-time with an offset, such as "2026-12-02T09:00:00+08:00"'
    ]


def test_send_at_must_exist_be_text_and_lie_within_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SendAt, "clock", staticmethod(lambda: 1_796_173_200.0))
    schema = MessageSchema()
    assert errors(schema, "2026-12-02T09:00:00+08:00") == []
    assert errors(schema, "2026-12-02T01:00:00Z") == []
    assert errors(schema, "2026-12-02T08:59:00+08:00") == []  # a minute late is let through
    assert errors(schema, "2026-12-02T08:58:59+08:00") == [
        "must not be more than 60 seconds in the past"
    ]
    assert errors(schema, "2027-01-01T09:00:00+08:00") == []  # 30 days ahead
    assert errors(schema, "2027-01-01T09:00:01+08:00") == ["must be at most 30 days ahead"]
    assert errors(schema, "2026-02-30T09:00:00+08:00")[0].startswith("is not a real date")
    assert errors(schema, 1796173200) == ["Not a valid string."]
    campaign = CampaignSchema()
    bulk = {"template_id": "T", "data": GOOD["data"], "recipients": [{"touser": "oA"}]}
    with pytest.raises(Exception, match="past"):
        campaign.load({**bulk, "send_at": "2020-01-01T00:00:00Z"})


def test_a_scheduled_message_is_answered_scheduled_and_shown_so(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    send_at = ahead(120)
    response = client.post("/v1/messages", **signed({**GOOD, "send_at": send_at}))
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "scheduled" and answer["send_at"] == send_at
    assert redis_client.llen(MESSAGES_QUEUE) == 0
    view = client.get(f"/v1/messages/{answer['id']}", headers=AUTH).get_json()
    assert (view["status"], view["send_at"]) == ("scheduled", send_at)
    assert [h["status"] for h in view["history"]] == ["scheduled"]
    repeat = client.post("/v1/messages", **signed({**GOOD, "send_at": send_at}))
    assert repeat.status_code == 202 and repeat.get_json() == answer


def test_a_send_at_in_the_past_or_beyond_the_horizon_is_refused_400(client: FlaskClient) -> None:
    for when, word in ((ahead(-120), "past"), (ahead(31 * 86400), "days ahead")):
        response = client.post("/v1/messages", **signed({**GOOD, "send_at": when}, msg_id=when))
        assert response.status_code == 400
        assert word in response.get_json()["errors"]["send_at"][0]


def test_delete_cancels_a_scheduled_message_once_and_refuses_a_queued_one(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    body = {**GOOD, "send_at": ahead(60)}
    waiting = client.post("/v1/messages", **signed(body)).get_json()["id"]
    queued = client.post("/v1/messages", **signed(GOOD, msg_id="m2")).get_json()["id"]
    for _ in range(2):  # a repeated DELETE answers the same
        response = client.delete(f"/v1/messages/{waiting}", headers=AUTH)
        assert response.status_code == 200
        assert response.get_json() == {"id": waiting, "status": "cancelled"}
    view = client.get(f"/v1/messages/{waiting}", headers=AUTH).get_json()
    assert view["status"] == "cancelled"
    assert [h["status"] for h in view["history"]] == ["scheduled", "cancelled"]
    refused = client.delete(f"/v1/messages/{queued}", headers=AUTH)
    assert refused.status_code == 409 and "queued" in refused.get_json()["detail"]
    assert client.delete("/v1/messages/" + "f" * 32, headers=AUTH).status_code == 404
    assert client.delete("/v1/messages/not-an-id", headers=AUTH).status_code == 404
    assert client.delete(f"/v1/messages/{'a' * 32}-3", headers=AUTH).status_code == 409
    assert client.delete(f"/v1/messages/{waiting}").status_code == 401
    assert Schedule(redis_client).move_due(10, now=time.time() + 3600).lateness == []


def test_a_scheduled_batch_shows_its_state_and_can_be_cancelled(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    people = [{"touser": f"oPerson{i:04d}"} for i in range(150)]
    bulk = {"template_id": "T", "data": GOOD["data"], "recipients": people, "send_at": ahead(90)}
    answer = client.post("/v1/messages/batch", **signed(bulk)).get_json()
    assert answer["status"] == "scheduled" and answer["count"] == 150
    batch_id = answer["batch_id"]
    summary = client.get(f"/v1/batches/{batch_id}", headers=AUTH).get_json()
    assert summary["state"] == "scheduled" and summary["send_at"] == bulk["send_at"]
    assert summary["counts"]["scheduled"] == 150 and summary["counts"]["queued"] == 0
    recipient = client.get(f"/v1/messages/{batch_id}-149", headers=AUTH).get_json()
    assert recipient["status"] == "scheduled"
    response = client.delete(f"/v1/batches/{batch_id}", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json() == {"id": batch_id, "state": "cancelled"}
    summary = client.get(f"/v1/batches/{batch_id}", headers=AUTH).get_json()
    assert summary["state"] == "cancelled" and summary["counts"]["cancelled"] == 150
    assert summary["counts"]["queued"] == 0 and "scheduled" not in summary["counts"]
    recipient = client.get(f"/v1/messages/{batch_id}-0", headers=AUTH).get_json()
    assert recipient["status"] == "cancelled"
    assert client.delete("/v1/batches/" + "f" * 32, headers=AUTH).status_code == 404
    assert client.delete(f"/v1/batches/{batch_id}").status_code == 401
    Schedule(redis_client).move_due(10, now=time.time() + 3600)
    assert redis_client.llen(CAMPAIGNS_QUEUE) == 0


def test_a_queued_batch_is_cancelled_until_a_chunk_starts(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    people = [{"touser": f"oPerson{i:04d}"} for i in range(3)]
    bulk = {"template_id": "T", "data": GOOD["data"], "recipients": people}
    first = client.post("/v1/messages/batch", **signed(bulk)).get_json()["batch_id"]
    second = client.post("/v1/messages/batch", **signed(bulk, msg_id="m2")).get_json()["batch_id"]
    response = client.delete(f"/v1/batches/{first}", headers=AUTH)
    assert response.status_code == 200 and response.get_json()["state"] == "cancelled"
    counts = client.get(f"/v1/batches/{first}", headers=AUTH).get_json()["counts"]
    assert counts["cancelled"] == 3 and counts["queued"] == 0
    queued = client.get(f"/v1/batches/{second}", headers=AUTH).get_json()
    assert queued["counts"]["queued"] == 3 and "send_at" not in queued
    assert client.get(f"/v1/messages/{second}-2", headers=AUTH).get_json()["status"] == "queued"
    redis_client.hset(campaign_key(PREFIX, second), "state", "sending")  # a chunk started
    refused = client.delete(f"/v1/batches/{second}", headers=AUTH)
    assert refused.status_code == 409 and "sending" in refused.get_json()["detail"]
