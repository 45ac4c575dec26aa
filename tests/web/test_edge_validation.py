"""Exact validation at the edge: whole-string patterns, ids in paths, signed headers, encodings."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from notifier.config import Settings
from notifier.signature import sign, signed_headers
from notifier.store.campaign_ids import split_recipient_id
from notifier.store.messages import MessageState
from notifier.web.app import create_app
from notifier.wechat.receipts import sha1_signature
from tests.conftest import GOOD, SECRET, signed

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALLBACK_TOKEN = "callbacktoken"
# Digits int() reads but no sender means: superscript two (below), and full-width forms.
FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    configured = replace(settings, api_tokens=(TOKEN,), wechat_callback_token=CALLBACK_TOKEN)
    return create_app(configured).test_client()


def batch(*tousers: str, **extra: Any) -> dict[str, Any]:
    people = [{"touser": touser} for touser in tousers]
    return {"template_id": "TPL", "data": {"k": {"value": "v"}}, "recipients": people, **extra}


def queued(redis_client: redis.Redis) -> int:
    return int(redis_client.llen("notifier.messages") + redis_client.llen("notifier.campaigns"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"touser": "oUser0001\n"}, "touser"),
        ({"template_id": "TPL_1\n"}, "template_id"),
        ({"data": {"thing1\n": {"value": "x"}}}, "data"),
        ({"client_msg_id": "order-1\n"}, "client_msg_id"),
        ({"url": "https://shop.example/a\n"}, "url"),
    ],
)
def test_a_trailing_newline_is_refused(
    client: FlaskClient, redis_client: redis.Redis, change: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/messages", **signed({**GOOD, **change}))
    assert response.status_code == 400
    assert field in response.get_json()["errors"]
    assert queued(redis_client) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (batch("oA", "oB\n"), "recipients"),
        (batch("oA", template_id="TPL\n"), "template_id"),
        (batch("oA", data={"k\n": {"value": "v"}}), "data"),
        (
            {**batch(), "recipients": [{"touser": "oA", "data": {"k\n": {"value": "v"}}}]},
            "recipients",
        ),
    ],
)
def test_a_trailing_newline_in_a_batch_is_refused(
    client: FlaskClient, redis_client: redis.Redis, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/messages/batch", **signed(body))
    assert response.status_code == 400
    assert field in response.get_json()["errors"]
    assert queued(redis_client) == 0


def test_a_batch_naming_a_follower_twice_is_refused_with_the_repeats_indexes(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    body = batch("oA", "oB", "oA", "oC", "oB", "oA")
    body["recipients"][4]["data"] = {f"k{i}": {"value": "v"} for i in range(50)}
    response = client.post("/v1/messages/batch", **signed(body))
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "recipients": {
            "2": {"touser": ["repeats recipient 0"]},
            "4": {
                "touser": ["repeats recipient 1"],
                "data": ["shared and own data together must hold 1 to 50 fields"],
            },
            "5": {"touser": ["repeats recipient 0"]},
        }
    }
    assert queued(redis_client) == 0


def _message(client: FlaskClient) -> str:
    response = client.post("/v1/messages", **signed(GOOD, msg_id=f"m{time.monotonic_ns()}"))
    assert response.status_code == 202
    return str(response.get_json()["id"])


def _campaign(client: FlaskClient) -> str:
    response = client.post("/v1/messages/batch", **signed(batch("oA", "oB"), msg_id="b1"))
    assert response.status_code == 202
    return str(response.get_json()["batch_id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/messages/{message}:history"),
        ("GET", "/v1/messages/{message}:claim"),
        ("GET", "/v1/messages/{upper}"),
        ("GET", "/v1/messages/{message}%0A"),
        ("GET", "/v1/messages/{campaign}-²"),
        ("GET", "/v1/messages/{campaign}-{wide}"),
        ("GET", "/v1/messages/{campaign}-01"),
        ("GET", "/v1/messages/{campaign}-0%0A"),
        ("GET", "/v1/messages/{campaign}"),
        ("POST", "/v1/dead-letters/{message}:history/replay"),
        ("POST", "/v1/dead-letters/{campaign}-0/replay"),
        ("GET", "/v1/batches/{campaign}:chunks"),
        ("GET", "/v1/batches/{campaign}:r"),
        ("GET", "/v1/batches/{campaign}%0A"),
        ("GET", "/v1/batches/{message}"),
    ],
)
def test_ids_in_paths_that_were_never_minted_are_404(
    client: FlaskClient, redis_client: redis.Redis, method: str, path: str
) -> None:
    message, campaign = _message(client), _campaign(client)
    MessageState(redis_client).record_failed(message, 43004, "unfollowed", GOOD)
    url = path.format(
        message=message, upper=message.upper(), campaign=campaign, wide="1".translate(FULL_WIDTH)
    )
    response = client.open(url, method=method, headers=AUTH)
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    # The ids as minted still answer.
    assert client.get(f"/v1/messages/{message}", headers=AUTH).status_code == 200
    assert client.get(f"/v1/messages/{campaign}-1", headers=AUTH).status_code == 200
    assert client.get(f"/v1/batches/{campaign}", headers=AUTH).status_code == 200


def _callback_query(timestamp: str, nonce: str = "n1") -> dict[str, str]:
    return {
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": sha1_signature(CALLBACK_TOKEN, timestamp, nonce),
    }


@pytest.mark.parametrize("timestamp", ["²", "now-in-full-width-digits"])
def test_a_signed_callback_with_a_timestamp_in_other_digits_is_refused(
    client: FlaskClient, timestamp: str
) -> None:
    if timestamp.startswith("now"):
        timestamp = str(int(time.time())).translate(FULL_WIDTH)
    other = b"<xml><MsgType>event</MsgType><Event>VIEW</Event></xml>"  # well-formed, no receipt
    response = client.post("/wechat/callback", query_string=_callback_query(timestamp), data=other)
    assert response.status_code == 403


def test_a_receipt_whose_msgid_is_in_other_digits_is_refused(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.record_sent("m1", 200163836)
    receipt = (
        "<xml><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event>"
        f"<MsgID>{'200163836'.translate(FULL_WIDTH)}</MsgID><Status>success</Status></xml>"
    ).encode()
    query = _callback_query(str(int(time.time())))
    response = client.post("/wechat/callback", query_string=query, data=receipt)
    assert response.status_code == 400
    assert state.status("m1") == "sent"


def _post(client: FlaskClient, headers: Any, body: bytes = b"", **environ: str) -> Any:
    raw = body or json.dumps(GOOD).encode()
    return client.post(
        "/v1/messages",
        data=raw,
        headers=headers,
        content_type="application/json",
        environ_overrides=environ,
    )


@pytest.mark.parametrize(
    "webhook_id", ["msg 1", "msg,1", "msg_ü", "msg_\x7f", "msg_\t1", "m" * 257, "消息"]
)
def test_a_webhook_id_outside_its_character_set_is_400(
    client: FlaskClient, redis_client: redis.Redis, webhook_id: str
) -> None:
    body = json.dumps(GOOD).encode()
    response = _post(client, signed_headers(SECRET, webhook_id, body), body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "webhook-id" in response.get_json()["detail"]
    assert queued(redis_client) == 0


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
@pytest.mark.parametrize("joiner", [",", ", "])  # gunicorn's join, werkzeug's
def test_a_repeated_security_header_is_400(
    client: FlaskClient, redis_client: redis.Redis, name: str, joiner: str
) -> None:
    body = json.dumps(GOOD).encode()
    headers = signed_headers(SECRET, "m1", body)
    joined = joiner.join([headers[name], headers[name]])
    if name == "webhook-id":  # signed over the joined text, as the server would see it
        headers = signed_headers(SECRET, joined, body)
    headers[name] = joined
    response = _post(client, headers, body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert name in response.get_json()["detail"]
    assert queued(redis_client) == 0


def test_two_webhook_id_headers_are_400(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = json.dumps(GOOD).encode()
    headers = signed_headers(SECRET, "m1, m1", body)
    twice = [("webhook-id", "m1"), ("webhook-id", "m1")]
    rest = [(k, v) for k, v in headers.items() if k != "webhook-id"]
    assert _post(client, twice + rest, body).status_code == 400
    assert queued(redis_client) == 0


@pytest.mark.parametrize(
    "signature", ["v1,{good},v1,{good}", "v1", "v1,", ",{good}", "v1,{good}=="]
)
def test_a_malformed_signature_header_is_400(client: FlaskClient, signature: str) -> None:
    body = json.dumps(GOOD).encode()
    headers = signed_headers(SECRET, "m1", body)
    good = headers["webhook-signature"].removeprefix("v1,")
    headers["webhook-signature"] = signature.format(good=good)
    assert _post(client, headers, body).status_code == 400


@pytest.mark.parametrize("timestamp", ["0{now}", "000{now}"])
def test_a_timestamp_is_verified_over_its_exact_text(client: FlaskClient, timestamp: str) -> None:
    body = json.dumps(GOOD).encode()
    text = timestamp.format(now=int(time.time()))
    headers = {"webhook-id": "m1", "webhook-timestamp": text,
               "webhook-signature": sign(SECRET, "m1", text, body)}  # fmt: skip
    assert _post(client, headers, body).status_code == 202
    # A signature over another spelling of the same time does not verify it.
    headers["webhook-signature"] = sign(SECRET, "m1", int(text), body)
    assert _post(client, {**headers, "webhook-id": "m2"}, body).status_code == 401


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/batch"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip-body", "plain-body"])
def test_a_content_encoding_other_than_identity_is_415(
    client: FlaskClient, redis_client: redis.Redis, path: str, compress: bool
) -> None:
    document = GOOD if path == "/v1/messages" else batch("oA")
    raw = json.dumps(document).encode()
    body = gzip.compress(raw) if compress else raw
    kwargs = signed(body)
    kwargs["headers"]["Content-Encoding"] = "gzip"
    response = client.post(path, **kwargs)
    assert response.status_code == 415
    assert response.get_json()["detail"] == (
        "Content-Encoding is not supported; send the body uncompressed"
    )
    assert queued(redis_client) == 0
    identity = signed(raw, msg_id="m-identity")
    identity["headers"]["Content-Encoding"] = "identity"
    assert client.post(path, **identity).status_code == 202


@pytest.mark.parametrize(
    "text",
    [f"{'b' * 32}-²", f"{'b' * 32}-01", f"{'B' * 32}-1", f"{'b' * 32}-1\n", f"{'b' * 31}g-1"],
)
def test_only_a_recipient_id_as_minted_is_split(text: str) -> None:
    assert split_recipient_id(text) is None
    assert split_recipient_id(f"{'b' * 32}-10") == ("b" * 32, 10)
