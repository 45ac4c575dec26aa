"""POST /v1/messages: the answers a business system can get, none of them a 500."""

from __future__ import annotations

import io
import json
import tracemalloc
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from notifier.broker.queues import MESSAGES_QUEUE
from notifier.broker.wake import wake_key
from notifier.config import Settings
from notifier.store.keys import PREFIX, digest_key, message_key
from notifier.store.messages import MessageState
from notifier.web.app import create_app
from tests.conftest import GOOD, QueueView, signed


@pytest.fixture
def broker(redis_client: redis.Redis) -> QueueView:
    return QueueView(redis_client, "notifier.messages")


def test_a_signed_valid_message_is_queued_and_answered_202(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis
) -> None:
    response = client.post("/v1/messages", **signed(GOOD))
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued"
    assert len(broker.published) == 1
    payload = broker.published[0]
    assert payload["id"] == body["id"]
    assert payload["client_msg_id"] == body["id"]
    assert payload["touser"] == "oUser0001"
    assert MessageState(redis_client).status(body["id"]) == "queued"


def test_a_client_msg_id_given_by_the_sender_is_kept(
    client: FlaskClient, broker: QueueView
) -> None:
    response = client.post("/v1/messages", **signed({**GOOD, "client_msg_id": "order-42"}))
    assert response.status_code == 202
    assert broker.published[0]["client_msg_id"] == "order-42"


def test_url_and_miniprogram_pass_through(client: FlaskClient, broker: QueueView) -> None:
    message = {
        **GOOD,
        "url": "https://shop.example/o/1",
        "miniprogram": {"appid": "wxmini", "pagepath": "p/i"},
    }
    assert client.post("/v1/messages", **signed(message)).status_code == 202
    assert broker.published[0]["miniprogram"] == {"appid": "wxmini", "pagepath": "p/i"}
    assert broker.published[0]["url"] == "https://shop.example/o/1"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda kw: kw["headers"].pop("webhook-signature"),
        lambda kw: kw["headers"].update({"webhook-signature": "v1,AAAA"}),
        lambda kw: kw["headers"].update({"webhook-timestamp": "1000000000"}),
        lambda kw: kw.update({"data": kw["data"] + b" "}),
    ],
    ids=["missing", "forged", "stale", "body-changed"],
)
def test_bad_signatures_get_401_and_nothing_is_queued(
    client: FlaskClient, broker: QueueView, mangle: Any
) -> None:
    kwargs = signed(GOOD)
    mangle(kwargs)
    response = client.post("/v1/messages", **kwargs)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert broker.published == []


def test_every_bad_field_is_named_in_one_400(client: FlaskClient, broker: QueueView) -> None:
    bad = {
        "touser": "not an openid!",
        "data": {"thing1": {"value": 5, "color": "#f00"}},
        "url": "javascript:alert(1)",
        "extra": True,
    }
    response = client.post("/v1/messages", **signed(bad))
    assert response.status_code == 400
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert set(problem["errors"]) == {"touser", "template_id", "data", "url", "extra"}
    assert broker.published == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b"[" * 5000 + b"]" * 5000, b"\xff\xfe"],
    ids=["broken", "array", "string", "deep", "binary"],
)
def test_bodies_that_are_not_a_json_object_get_400(
    client: FlaskClient, broker: QueueView, body: bytes
) -> None:
    response = client.post("/v1/messages", **signed(body))
    assert response.status_code == 400
    assert broker.published == []


def test_empty_data_is_refused(client: FlaskClient) -> None:
    response = client.post("/v1/messages", **signed({**GOOD, "data": {}}))
    assert response.status_code == 400
    assert "data" in response.get_json()["errors"]


def test_a_body_that_is_not_json_gets_415(client: FlaskClient, broker: QueueView) -> None:
    kwargs = signed(GOOD)
    kwargs["content_type"] = "text/plain"
    response = client.post("/v1/messages", **kwargs)
    assert response.status_code == 415
    assert broker.published == []


def test_a_body_over_the_limit_gets_413(
    client: FlaskClient, settings: Settings, broker: QueueView
) -> None:
    big = {**GOOD, "data": {f"k{i}": {"value": "x" * 190} for i in range(400)}}
    raw = json.dumps(big).encode()
    assert len(raw) > settings.max_body_bytes
    response = client.post("/v1/messages", **signed(raw))
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert broker.published == []


def test_broker_down_gets_503_and_leaves_no_record(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis
) -> None:
    broker.down = True
    response = client.post("/v1/messages", **signed(GOOD))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert redis_client.keys(message_key(PREFIX, "*")) == []


def test_redis_unreachable_gets_503(settings: Settings, broker: QueueView) -> None:
    from dataclasses import replace

    app = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    response = app.test_client().post("/v1/messages", **signed(GOOD))
    assert response.status_code == 503
    assert broker.published == []


def test_a_connection_dropped_by_redis_is_reopened_without_a_503(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis
) -> None:
    assert client.post("/v1/messages", **signed(GOOD, msg_id="m1")).status_code == 202
    redis_client.client_kill_filter(_type="normal", skipme=True)  # as a Redis restart does
    assert client.post("/v1/messages", **signed(GOOD, msg_id="m2")).status_code == 202
    assert len(broker.published) == 2


def test_a_reply_lost_after_the_script_ran_admits_the_message_once(
    client: FlaskClient, broker: QueueView
) -> None:
    admission = client.application.extensions["notifier"].admission
    script, calls = admission._message, []

    def ran_then_lost(**kwargs: Any) -> Any:
        calls.append(kwargs)
        answer = script(**kwargs)
        if len(calls) == 1:
            raise redis.ConnectionError("Connection closed by server.")
        return answer

    admission._message = ran_then_lost
    response = client.post("/v1/messages", **signed(GOOD))
    assert response.status_code == 202
    assert [m["id"] for m in broker.published] == [response.get_json()["id"]]
    assert len(calls) == 2


def test_unknown_routes_and_methods_are_problems(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404
    response = client.get("/v1/messages")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"


def test_a_repeated_webhook_id_with_the_same_body_returns_the_original_answer(
    client: FlaskClient, broker: QueueView, redis_client: redis.Redis
) -> None:
    first = client.post("/v1/messages", **signed(GOOD, msg_id="order-7"))
    again = client.post("/v1/messages", **signed(GOOD, msg_id="order-7"))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.get_json() == first.get_json()
    assert len(broker.published) == 1
    # One wake-up token with the message, for one idle worker; none for the repeat.
    assert redis_client.llen(wake_key(MESSAGES_QUEUE)) == 1
    assert redis_client.ttl(wake_key(MESSAGES_QUEUE)) > 0  # gone with its queue, if that goes


def test_a_repeated_webhook_id_with_another_body_is_a_conflict(
    client: FlaskClient, broker: QueueView
) -> None:
    assert client.post("/v1/messages", **signed(GOOD, msg_id="order-8")).status_code == 202
    other = {**GOOD, "touser": "oOtherUser1"}
    response = client.post("/v1/messages", **signed(other, msg_id="order-8"))
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert len(broker.published) == 1


def test_a_webhook_id_refused_with_503_can_be_retried(
    client: FlaskClient, broker: QueueView
) -> None:
    broker.down = True
    assert client.post("/v1/messages", **signed(GOOD, msg_id="order-9")).status_code == 503
    broker.down = False
    assert client.post("/v1/messages", **signed(GOOD, msg_id="order-9")).status_code == 202
    assert len(broker.published) == 1


def test_the_idempotency_key_is_kept_at_least_a_day(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    assert client.post("/v1/messages", **signed(GOOD, msg_id="order-10")).status_code == 202
    (key,) = redis_client.keys(digest_key(PREFIX, "idempotency", "*"))
    assert redis_client.ttl(key) >= 24 * 3600 - 5


@pytest.mark.parametrize(
    "value",
    ["\ud800", "nul\u0000byte", "two\nlines", "tab\there", "del\x7f"],
    ids=["surrogate", "nul", "newline", "tab", "del"],
)
def test_unprintable_text_is_refused(client: FlaskClient, broker: QueueView, value: str) -> None:
    message = {**GOOD, "data": {"thing1": {"value": value}}}
    response = client.post("/v1/messages", **signed(json.dumps(message).encode()))
    assert response.status_code == 400
    assert "data" in response.get_json()["errors"]
    assert broker.published == []


def test_a_body_in_another_encoding_than_utf8_is_refused(
    client: FlaskClient, broker: QueueView
) -> None:
    response = client.post("/v1/messages", **signed(json.dumps(GOOD).encode("utf-16")))
    assert response.status_code == 400
    assert "UTF-8" in response.get_json()["detail"]
    assert broker.published == []


@pytest.mark.parametrize(("size", "status"), [(65536, 202), (65537, 413), (200_000, 413)])
def test_chunked_bodies_are_held_to_the_limit(
    client: FlaskClient, settings: Settings, broker: QueueView, size: int, status: int
) -> None:
    raw = json.dumps(GOOD).encode()
    raw = raw[:-1] + b" " * (size - len(raw)) + b"}"
    assert len(raw) == size and settings.max_body_bytes == 65536
    kwargs = signed(raw)
    response = client.post(
        "/v1/messages",
        input_stream=io.BytesIO(kwargs.pop("data")),
        environ_overrides={"wsgi.input_terminated": True},
        **kwargs,
    )
    assert response.status_code == status


@pytest.mark.parametrize("chunked", [False, True])
def test_a_refused_body_is_dropped_a_piece_at_a_time_not_held(
    client: FlaskClient, broker: QueueView, chunked: bool
) -> None:
    raw = b"{" + b" " * (3 << 20) + b"}"  # 3 MiB: under the batch limit, over this one
    kwargs = signed(raw)
    stream = io.BytesIO(kwargs.pop("data"))
    tracemalloc.start()
    try:
        response = client.post(
            "/v1/messages",
            input_stream=stream,
            environ_overrides={"wsgi.input_terminated": True} if chunked else {},
            **({} if chunked else {"content_length": len(raw)}),
            **kwargs,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert stream.tell() == len(raw)  # read to the end: the connection stays in step
    assert peak < 1 << 20  # never the whole body at once
    assert broker.published == []


@pytest.mark.parametrize("char", ["\u0085", "\u2028", "\u2029", "\u202e", "\u2066"])
def test_invisible_line_breaks_and_bidi_overrides_are_refused(
    client: FlaskClient, char: str
) -> None:
    message = {**GOOD, "data": {"thing1": {"value": f"a{char}b"}}}
    assert client.post("/v1/messages", **signed(json.dumps(message).encode())).status_code == 400


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"value": "x" * 201}, "at most 200 characters"),
        ({"value": 5}, "must be a string"),
        ({"value": "v", "color": "#f00"}, "with one key"),
        ("just text", "with one key"),
        ({"value": "a\x00b"}, "control characters"),
    ],
)
def test_each_template_field_is_one_short_printable_string(
    client: FlaskClient, value: object, problem: str
) -> None:
    message = {**GOOD, "data": {"thing1": value}}
    response = client.post("/v1/messages", **signed(json.dumps(message).encode()))
    assert response.status_code == 400
    assert problem in json.dumps(response.get_json()["errors"]["data"])


def test_a_field_of_200_characters_and_readable_unicode_is_accepted(client: FlaskClient) -> None:
    text = "订单已发货预计明日送达" + "x" * 189
    message = {**GOOD, "data": {"thing1": {"value": text}, "time2": {"value": "2026年11月26日"}}}
    response = client.post("/v1/messages", **signed(json.dumps(message).encode()))
    assert response.status_code == 202, response.get_json()


def test_duplicate_keys_are_refused(client: FlaskClient, broker: QueueView) -> None:
    raw = (
        b'{"touser":"oUser0001","touser":"oOther001","template_id":"T","data":{"k":{"value":"v"}}}'
    )
    response = client.post("/v1/messages", **signed(raw))
    assert response.status_code == 400
    assert "same key twice" in response.get_json()["detail"]
    assert broker.published == []


def test_a_url_with_a_lone_surrogate_is_a_400_not_a_500(client: FlaskClient) -> None:
    raw = json.dumps({**GOOD, "url": "https://shop.example/\ud800"}).encode()  # escaped in JSON
    response = client.post("/v1/messages", **signed(raw))
    assert response.status_code == 400
    assert "url" in response.get_json()["errors"]
