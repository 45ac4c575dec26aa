"""Status and operator endpoints: bearer tokens, message status, dead letters, quota."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from notifier.config import Settings
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.web.app import _refused, create_app
from tests.conftest import GOOD, QueueView, signed

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def broker(redis_client: redis.Redis) -> QueueView:
    return QueueView(redis_client, "notifier.messages")


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    configured = replace(settings, api_tokens=("another-token-abcdefgh", TOKEN))
    return create_app(configured).test_client()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_status_needs_a_known_bearer_token(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/v1/messages/abc", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_status_of_an_unknown_message_is_404(client: FlaskClient) -> None:
    assert client.get("/v1/messages/nope", headers=AUTH).status_code == 404


def test_status_shows_the_lifecycle(client: FlaskClient, redis_client: redis.Redis) -> None:
    message_id = client.post("/v1/messages", **signed(GOOD)).get_json()["id"]
    state = MessageState(redis_client)
    state.record_retrying(message_id, -1, "system busy")
    state.record_sent(message_id, 123)
    view = client.get(f"/v1/messages/{message_id}", headers=AUTH).get_json()
    assert view["id"] == message_id
    assert (view["status"], view["msgid"]) == ("sent", 123)
    assert [h["status"] for h in view["history"]] == ["queued", "retrying", "sent"]
    assert view["history"][0]["at"].endswith("Z")


def park(
    client: FlaskClient, redis_client: redis.Redis, errcode: int = 43004
) -> tuple[str, dict[str, Any]]:
    message_id = client.post("/v1/messages", **signed(GOOD, msg_id=f"w-{errcode}")).get_json()["id"]
    payload = {"id": message_id, **GOOD, "client_msg_id": message_id}
    MessageState(redis_client).record_failed(message_id, errcode, "require subscribe", payload)
    return message_id, payload


def test_dead_letters_are_listed_with_payload_and_replayed_under_their_id(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis
) -> None:
    message_id, payload = park(client, redis_client)
    listing = client.get("/v1/dead-letters", headers=AUTH).get_json()
    assert listing["total"] == 1
    (item,) = listing["items"]
    assert (item["id"], item["errcode"], item["payload"]) == (message_id, 43004, payload)
    response = client.post(f"/v1/dead-letters/{message_id}/replay", headers=AUTH)
    assert response.status_code == 202
    assert broker.published[-1] == payload
    assert client.get("/v1/dead-letters", headers=AUTH).get_json()["total"] == 0
    again = client.post(f"/v1/dead-letters/{message_id}/replay", headers=AUTH)
    assert again.status_code == 404
    view = client.get(f"/v1/messages/{message_id}", headers=AUTH).get_json()
    assert [h["status"] for h in view["history"]] == ["queued", "failed", "queued"]


def test_replay_all(client: FlaskClient, broker: QueueView, redis_client: redis.Redis) -> None:
    park(client, redis_client, 43004)
    park(client, redis_client, 40003)
    before = len(broker.published)
    response = client.post("/v1/dead-letters/replay", headers=AUTH)
    assert response.get_json() == {"replayed": 2}
    assert len(broker.published) == before + 2


def test_operator_endpoints_need_the_token(client: FlaskClient) -> None:
    for method, path in [
        ("GET", "/v1/dead-letters"),
        ("POST", "/v1/dead-letters/x/replay"),
        ("POST", "/v1/dead-letters/replay"),
        ("GET", "/v1/quota"),
        ("POST", "/v1/quota/resume"),
    ]:
        assert client.open(path, method=method).status_code == 401, path


def test_quota_pause_is_visible_and_can_be_lifted(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis, settings: Settings
) -> None:
    message_id = client.post("/v1/messages", **signed(GOOD)).get_json()["id"]
    payload = {"id": message_id, **GOOD, "client_msg_id": message_id}
    QuotaGate(redis_client, settings.wechat_app_id).pause("reach max api daily quota limit")
    MessageState(redis_client).record_deferred(message_id, 45009, "quota", payload)
    view = client.get("/v1/quota", headers=AUTH).get_json()
    assert view["paused"] and view["deferred"] == 1 and view["until"].endswith("Z")
    assert client.get(f"/v1/messages/{message_id}", headers=AUTH).get_json()["status"] == "deferred"
    response = client.post("/v1/quota/resume", headers=AUTH).get_json()
    assert response == {"lifted": True, "resumed": 1}
    assert broker.published[-1] == payload
    view = client.get("/v1/quota", headers=AUTH).get_json()
    assert view == {"paused": False, "deferred": 0, "deferred_campaign_chunks": 0}


def test_bearer_refusals_name_the_bearer_scheme(client: FlaskClient) -> None:
    response = client.get("/v1/dead-letters")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="notifier"'


def test_the_quota_view_refuses_to_guess_without_an_app_id(
    settings: Settings, broker: QueueView, redis_client: redis.Redis
) -> None:
    configured = replace(settings, api_tokens=(TOKEN,), wechat_app_id="")
    client = create_app(configured).test_client()
    assert client.get("/v1/quota", headers=AUTH).status_code == 503


def test_replay_all_replays_each_message_once_even_if_it_fails_again(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis
) -> None:
    class FailingAgain(MessageState):
        """Each message fails again the moment it is queued, as a fast permanent error would."""

        def requeue(self, message_id: str, reason: str) -> str | None:
            before = super().requeue(message_id, reason)
            if before is not None:
                self.record_failed(message_id, 43004, "require subscribe", {"id": message_id})
            return before

    state = FailingAgain(redis_client)
    ids = []
    for i in range(5):
        message_id = f"m{i}"
        state.record_queued(message_id, {"id": message_id, **GOOD})
        state.record_dead(message_id, -1, "busy", {"id": message_id})
        ids.append(message_id)

    from notifier.store.deferred import DeferredChunks
    from notifier.store.replay import Replayer

    replayed = Replayer(state, DeferredChunks(redis_client)).replay_all(state.dead_index)
    assert replayed == 5
    assert sorted(task["id"] for task in broker.tasks) == ids
    assert state.count(state.dead_index) == 5  # parked again, for the next replay


def test_offsets_past_any_list_are_harmless(client: FlaskClient) -> None:
    response = client.get("/v1/dead-letters?offset=9223372036854775807", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["items"] == []


def test_every_endpoint_answers_503_while_redis_refuses_writes(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    message_id, _ = park(client, redis_client)
    redis_client.config_set("min-replicas-to-write", 1)  # NOREPLICAS: every write refused
    try:
        refused = [
            client.post("/v1/messages", **signed(GOOD, msg_id="while-refused")),
            client.post(f"/v1/dead-letters/{message_id}/replay", headers=AUTH),
            client.post("/v1/dead-letters/replay", headers=AUTH),
        ]
        reads = [client.get(f"/v1/messages/{message_id}", headers=AUTH)]
    finally:
        redis_client.config_set("min-replicas-to-write", 0)
    for response in refused:
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"]
    assert [r.status_code for r in reads] == [200]
    assert MessageState(redis_client).status(message_id) == "failed"  # nothing half-done


@pytest.mark.parametrize(
    "text",
    [
        "NOREPLICAS Not enough good replicas to write.",
        # Redis 6.2 (the bundled server) wraps a refusal met inside a script.
        "Error running script (call to f_1): @user_script:1: @user_script: 1: -NOREPLICAS "
        "Not enough good replicas to write.",
        "Error running script (call to f_1): @user_script:1: @user_script: 1: -OOM command not "
        "allowed when used memory > 'maxmemory'.",
        "Error running script (call to f_1): @user_script:1: @user_script: 1: -READONLY You "
        "can't write against a read only replica.",
    ],
)
def test_a_refusal_is_recognised_raised_directly_or_inside_a_script(text: str) -> None:
    assert _refused(redis.ResponseError(text))


def test_a_script_bug_is_not_taken_for_a_refusal() -> None:
    assert not _refused(redis.ResponseError("Error running script: attempt to index a nil value"))
