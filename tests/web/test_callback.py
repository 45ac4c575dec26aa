"""/wechat/callback: handshake, signed receipts in plain and safe mode, and hostile XML refused."""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import os
import time
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from notifier.config import Settings
from notifier.store.messages import MessageState
from notifier.web.app import create_app
from notifier.web.callback import MAX_BODY_BYTES as CALLBACK_LIMIT
from notifier.wechat.receipts import MAX_XML_DEPTH, CallbackVerifier, sha1_signature

TOKEN = "callbacktoken"
AES_KEY = base64.b64encode(os.urandom(32)).decode().rstrip("=")
_NONCES = itertools.count(1)


def receipt_xml(msgid: int, status: str = "success") -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName>"
        "<CreateTime>1790000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msgid}</MsgID>"
        f"<Status><![CDATA[{status}]]></Status></xml>"
    ).encode()


def query(timestamp: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """A fresh timestamp and nonce, as WeChat sends with each push."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {"timestamp": stamp, "nonce": nonce or str(next(_NONCES))}


def signed_query(*extra: str, base: dict[str, str] | None = None) -> dict[str, str]:
    q = base or query()
    return {**q, "signature": sha1_signature(TOKEN, q["timestamp"], q["nonce"], *extra)}


def safe_mode_query(encrypted: str) -> dict[str, str]:
    """The query of a safe-mode push: both signatures over one timestamp and nonce."""
    base = query()
    return {
        **signed_query(base=base),
        "encrypt_type": "aes",
        "msg_signature": signed_query(encrypted, base=base)["signature"],
    }


@pytest.fixture
def state(redis_client: redis.Redis) -> MessageState:
    state = MessageState(redis_client)
    state.record_queued("m1")
    state.record_sent("m1", 200163836)
    return state


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    """The callback in plain mode: a token, no EncodingAESKey."""
    return create_app(replace(settings, wechat_callback_token=TOKEN)).test_client()


@pytest.fixture
def safe_client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    """The callback in safe mode: with an EncodingAESKey, only encrypted pushes count."""
    configured = replace(settings, wechat_callback_token=TOKEN, wechat_encoding_aes_key=AES_KEY)
    return create_app(configured).test_client()


def test_the_handshake_echoes_echostr_when_signed(client: FlaskClient) -> None:
    response = client.get("/wechat/callback", query_string={**signed_query(), "echostr": "e123"})
    assert (response.status_code, response.text) == (200, "e123")
    forged = client.get(
        "/wechat/callback", query_string={**query(), "signature": "0" * 40, "echostr": "e"}
    )
    assert forged.status_code == 403


def test_a_stale_handshake_is_refused(client: FlaskClient) -> None:
    stale = signed_query(base=query(timestamp=time.time() - 3600))
    response = client.get("/wechat/callback", query_string={**stale, "echostr": "e123"})
    assert response.status_code == 403 and "e123" not in response.text


def test_without_a_callback_token_the_endpoint_is_off(settings: Settings) -> None:
    client = create_app(settings).test_client()
    assert client.get("/wechat/callback", query_string=signed_query()).status_code == 404


def test_a_receipt_marks_the_message_delivered_and_repeats_are_absorbed(
    client: FlaskClient, state: MessageState
) -> None:
    for _ in range(3):  # WeChat pushes again when unsure we got it
        response = client.post(
            "/wechat/callback", query_string=signed_query(), data=receipt_xml(200163836)
        )
        assert (response.status_code, response.text) == (200, "success")
    record = state.get("m1")
    assert record is not None
    assert [h["status"] for h in record.history] == ["queued", "sent", "delivered"]


def test_a_failed_receipt_keeps_the_reason(client: FlaskClient, state: MessageState) -> None:
    client.post(
        "/wechat/callback",
        query_string=signed_query(),
        data=receipt_xml(200163836, "failed:user block"),
    )
    record = state.get("m1")
    assert record is not None
    assert (record.status, record.errmsg) == ("failed", "failed:user block")


def test_an_unsigned_receipt_is_refused(client: FlaskClient, state: MessageState) -> None:
    response = client.post(
        "/wechat/callback",
        query_string={**query(), "signature": "f" * 40},
        data=receipt_xml(200163836),
    )
    assert response.status_code == 403
    assert state.status("m1") == "sent"


def test_a_safe_mode_receipt_is_decrypted(safe_client: FlaskClient, state: MessageState) -> None:
    sealer = CallbackVerifier(TOKEN, "wx_test_app", AES_KEY)
    encrypted = sealer.encrypt(receipt_xml(200163836), "wx_test_app")
    body = f"<xml><ToUserName>gh_1</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    params = safe_mode_query(encrypted)
    response = safe_client.post("/wechat/callback", query_string=params, data=body)
    assert (response.status_code, response.text) == (200, "success")
    assert state.status("m1") == "delivered"


def test_a_safe_mode_receipt_for_another_app_is_refused(
    safe_client: FlaskClient, state: MessageState
) -> None:
    sealer = CallbackVerifier(TOKEN, "wx_other", AES_KEY)
    encrypted = sealer.encrypt(receipt_xml(200163836), "wx_other")
    body = f"<xml><Encrypt>{encrypted}</Encrypt></xml>"
    params = safe_mode_query(encrypted)
    assert safe_client.post("/wechat/callback", query_string=params, data=body).status_code == 403
    assert state.status("m1") == "sent"


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<xml><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163836</MsgID>"
        b"<Status>&xxe;</Status></xml>",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<xml><Status>&lol3;</Status></xml>",
        b"<xml><unclosed></xml>",
    ],
    ids=["external-entity", "entity-expansion", "malformed"],
)
def test_hostile_or_broken_xml_is_refused(
    client: FlaskClient, state: MessageState, body: bytes
) -> None:
    response = client.post("/wechat/callback", query_string=signed_query(), data=body)
    assert response.status_code == 400
    assert state.status("m1") == "sent"


def test_a_replayed_callback_is_absorbed_and_a_stale_one_refused(
    client: FlaskClient, state: MessageState
) -> None:
    captured = signed_query()
    first = client.post(
        "/wechat/callback", query_string=captured, data=receipt_xml(200163836, "failed:x")
    )
    assert first.text == "success"
    # The same URL again, now claiming the message was delivered: answered, ignored.
    again = client.post("/wechat/callback", query_string=captured, data=receipt_xml(200163836))
    assert again.text == "success"
    assert state.status("m1") == "failed"
    stale = signed_query(base=query(timestamp=time.time() - 301))
    assert (
        client.post("/wechat/callback", query_string=stale, data=receipt_xml(1)).status_code == 403
    )


def test_a_failed_receipt_shows_its_reason_and_cannot_be_replayed(
    client: FlaskClient, state: MessageState
) -> None:
    client.post(
        "/wechat/callback",
        query_string=signed_query(),
        data=receipt_xml(200163836, "failed:user block"),
    )
    record = state.get("m1")
    assert record is not None and record.as_dict()["errmsg"] == "failed:user block"
    assert state.requeue("m1", "replayed") is None
    assert state.status("m1") == "failed"


def post(client: FlaskClient, params: dict[str, str], body: bytes | str, **kw: Any) -> TestResponse:
    return client.post("/wechat/callback", query_string=params, data=body, **kw)


def sealed_body(message: bytes, app_id: str = "wx_test_app") -> tuple[str, str]:
    """A safe-mode body and its Encrypt text."""
    encrypted = CallbackVerifier(TOKEN, app_id, AES_KEY).encrypt(message, app_id)
    return f"<xml><ToUserName>gh_1</ToUserName><Encrypt>{encrypted}</Encrypt></xml>", encrypted


def test_a_truncated_receipt_does_not_spend_its_nonce(
    client: FlaskClient, state: MessageState
) -> None:
    captured, whole = signed_query(), receipt_xml(200163836)
    assert post(client, captured, whole[:-20]).status_code == 400
    # The same push again, whole (a retry of a cut transfer): applied, not taken for a replay.
    assert (post(client, captured, whole).status_code, state.status("m1")) == (200, "delivered")
    assert post(client, captured, receipt_xml(200163836, "failed:x")).text == "success"
    assert state.status("m1") == "delivered"  # now it is spent


def test_a_safe_mode_receipt_cut_short_does_not_spend_its_nonce(
    safe_client: FlaskClient, state: MessageState
) -> None:
    body, encrypted = sealed_body(receipt_xml(200163836))
    params = safe_mode_query(encrypted)
    cut = body.replace(encrypted, encrypted[:-8])
    assert post(safe_client, params, cut).status_code == 403  # msg_signature covers Encrypt
    assert post(safe_client, params, body).status_code == 200
    assert state.status("m1") == "delivered"


def test_a_receipt_without_a_msgid_does_not_spend_its_nonce(
    client: FlaskClient, state: MessageState
) -> None:
    captured = signed_query()
    assert (
        post(client, captured, receipt_xml(200163836).replace(b"200163836", b"")).status_code == 400
    )
    assert post(client, captured, receipt_xml(200163836)).status_code == 200
    assert state.status("m1") == "delivered"


def padded_receipt(size: int) -> bytes:
    whole = receipt_xml(200163836)
    return whole + b" " * (size - len(whole))


@pytest.mark.parametrize(
    ("size", "status"),
    [(CALLBACK_LIMIT, 200), (CALLBACK_LIMIT + 1, 413), (4 * 1024 * 1024, 413), (5 << 20, 413)],
)
def test_a_callback_body_is_held_to_its_own_limit(
    client: FlaskClient, state: MessageState, size: int, status: int
) -> None:
    response = post(client, signed_query(), padded_receipt(size))
    assert response.status_code == status
    if status == 413:
        assert response.get_json()["detail"] == "body is larger than 65536 bytes"
        assert state.status("m1") == "sent"


@pytest.mark.parametrize(("size", "status"), [(CALLBACK_LIMIT, 200), (CALLBACK_LIMIT + 1, 413)])
def test_a_chunked_callback_body_is_held_to_its_limit(
    client: FlaskClient, state: MessageState, size: int, status: int
) -> None:
    response = client.post(
        "/wechat/callback",
        query_string=signed_query(),
        input_stream=io.BytesIO(padded_receipt(size)),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status


@pytest.mark.parametrize("levels", [MAX_XML_DEPTH, 9_000], ids=["one-too-deep", "nine-thousand"])
def test_deeply_nested_xml_is_refused(
    client: FlaskClient, state: MessageState, levels: int
) -> None:
    inner = b"<a>" * levels + b"</a>" * levels  # under the root: one level more than `levels`
    body = receipt_xml(200163836).replace(b"</xml>", inner + b"</xml>")
    assert len(body) <= CALLBACK_LIMIT
    assert post(client, signed_query(), body).status_code == 400
    assert state.status("m1") == "sent"


def test_deeply_nested_xml_inside_a_safe_mode_envelope_is_refused(
    safe_client: FlaskClient, state: MessageState
) -> None:
    deep = receipt_xml(200163836).replace(b"</xml>", b"<a>" * 50 + b"</a>" * 50 + b"</xml>")
    body, encrypted = sealed_body(deep)
    assert post(safe_client, safe_mode_query(encrypted), body).status_code == 400
    assert state.status("m1") == "sent"


@pytest.mark.parametrize(
    ("encoding", "gzipped"),
    [("gzip", True), ("gzip", False), ("deflate", False), ("br", False), ("identity, gzip", False)],
)
def test_an_encoded_callback_body_gets_415(
    client: FlaskClient, state: MessageState, encoding: str, gzipped: bool
) -> None:
    raw = receipt_xml(200163836)
    body = gzip.compress(raw) if gzipped else raw
    response = post(client, signed_query(), body, headers={"Content-Encoding": encoding})
    assert response.status_code == 415
    assert state.status("m1") == "sent"


@pytest.mark.parametrize("encoding", ["identity", "Identity "])
def test_an_identity_encoded_callback_is_applied(
    client: FlaskClient, state: MessageState, encoding: str
) -> None:
    headers = {"Content-Encoding": encoding}
    assert post(client, signed_query(), receipt_xml(200163836), headers=headers).status_code == 200
    assert state.status("m1") == "delivered"


def signed_as(timestamp: str, nonce: str) -> dict[str, str]:
    """A query signed over exactly these texts, whatever they are."""
    signature = sha1_signature(TOKEN, timestamp, nonce)
    return {"timestamp": timestamp, "nonce": nonce, "signature": signature}


def malformed() -> dict[str, tuple[dict[str, str] | str, bytes | str]]:
    """Callbacks no client should send, each built at the moment it is sent."""
    now = str(int(time.time()))
    good = receipt_xml(200163836)
    sealed = sealed_body(good)[0]
    garbage = base64.b64encode(os.urandom(64)).decode()
    return {
        "no-query": ({}, good),
        "no-signature": ({"timestamp": now, "nonce": "1"}, good),
        "no-timestamp": ({"nonce": "1", "signature": "0" * 40}, good),
        "signature-non-ascii": ({**query(), "signature": "é" * 40}, good),
        "signature-huge": ({**query(), "signature": "a" * 100_000}, good),
        "timestamp-superscript-two": (signed_as("²", "n1"), good),
        "timestamp-arabic-digits": (signed_as("\u0661\u0667" + "\u0660" * 8, "n2"), good),
        "timestamp-huge": (signed_as("9" * 10_000, "n3"), good),
        "timestamp-negative": (signed_as("-1", "n4"), good),
        "timestamp-spaces": (signed_as(f" {now} ", "n5"), good),
        "nonce-non-ascii": (signed_as(now, "ñ²😀"), good),
        "nonce-huge": (signed_as(now, "n" * 100_000), good),
        "query-bad-utf8": ("timestamp=%ff%fe&nonce=%80&signature=%c3", good),
        "query-repeated": ("timestamp=1&timestamp=2&nonce=1&nonce=2&signature=a", good),
        "empty-body": (signed_query(), b""),
        "not-xml": (signed_query(), b'{"MsgType": "event"}'),
        "binary-body": (signed_query(), os.urandom(512)),
        "utf16-xml": (signed_query(), good.decode().encode("utf-16")),
        "no-root-children": (signed_query(), b"<xml/>"),
        "msgid-huge": (signed_query(), good.replace(b"200163836", b"9" * 5_000)),
        "msgid-not-ascii": (signed_query(), good.replace(b"200163836", "²".encode())),
        "encrypt-type-unknown": ({**signed_query(), "encrypt_type": "des"}, good),
        "encrypt-type-aes-upper": ({**signed_query(), "encrypt_type": "AES"}, sealed),
        "aes-without-encrypt": ({**signed_query(), "encrypt_type": "aes"}, good),
        "aes-without-msg-signature": ({**signed_query(), "encrypt_type": "aes"}, sealed),
        "aes-garbage-signed": (
            safe_mode_query(garbage),
            f"<xml><Encrypt>{garbage}</Encrypt></xml>",
        ),
        "aes-not-base64-signed": (safe_mode_query("%%%"), "<xml><Encrypt>%%%</Encrypt></xml>"),
        "aes-empty-signed": (safe_mode_query(""), "<xml><Encrypt></Encrypt></xml>"),
    }


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("case", list(malformed()))
def test_malformed_callbacks_never_get_a_5xx(
    request: pytest.FixtureRequest, mode: str, case: str
) -> None:
    client: FlaskClient = request.getfixturevalue("client" if mode == "plain" else "safe_client")
    for method in ("GET", "POST"):
        params, body = malformed()[case]
        response = client.open("/wechat/callback", method=method, query_string=params, data=body)
        assert response.status_code < 500, (method, response.status_code, response.text)


def test_the_413_names_the_callback_limit_whatever_the_message_limit(
    settings: Settings, redis_client: redis.Redis, state: MessageState
) -> None:
    configured = replace(settings, wechat_callback_token=TOKEN, max_body_bytes=200_000)
    client = create_app(configured).test_client()
    for size in (CALLBACK_LIMIT + 1, 300_000, 5 << 20):  # read and refused; refused unread
        response = post(client, signed_query(), padded_receipt(size))
        assert response.status_code == 413
        assert response.get_json()["detail"] == "body is larger than 65536 bytes"
    assert state.status("m1") == "sent"


@pytest.mark.parametrize("encoding", ["rot13", "base64", "hex", "zlib", "no-such-codec"])
def test_an_xml_declaring_an_odd_encoding_is_refused_not_a_500(
    client: FlaskClient, state: MessageState, encoding: str
) -> None:
    body = f'<?xml version="1.0" encoding="{encoding}"?><xml><MsgType>event</MsgType></xml>'
    response = client.post("/wechat/callback", query_string=signed_query(), data=body.encode())
    assert response.status_code == 400
    assert state.status("m1") == "sent"


def test_a_stale_signed_url_is_refused_before_its_body_is_read(client: FlaskClient) -> None:
    stale = signed_query(base=query(timestamp=1600000000))
    response = client.post("/wechat/callback", query_string=stale, data=b"<xml><broken")
    assert response.status_code == 403


def test_a_receipt_that_redis_could_not_apply_is_taken_again(
    client: FlaskClient, state: MessageState, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured = signed_query()
    messages = type(client.application.extensions["notifier"].stores.messages)

    def down(*_: Any) -> None:
        raise redis.ConnectionError("redis went away")

    with monkeypatch.context() as patched:
        patched.setattr(messages, "message_for_msgid", down)
        refused = client.post(
            "/wechat/callback", query_string=captured, data=receipt_xml(200163836)
        )
    assert refused.status_code == 503
    again = client.post("/wechat/callback", query_string=captured, data=receipt_xml(200163836))
    assert again.text == "success"
    assert state.status("m1") == "delivered"


def test_with_an_encoding_aes_key_a_plain_push_is_refused_unspent(
    safe_client: FlaskClient, state: MessageState
) -> None:
    # A plain push's signature covers the timestamp and nonce, not the body.
    captured = signed_query()
    refused = post(safe_client, captured, receipt_xml(200163836, "failed:forged"))
    assert (refused.status_code, state.status("m1")) == (403, "sent")
    body, encrypted = sealed_body(receipt_xml(200163836))
    sealed = {**captured, "encrypt_type": "aes",
              "msg_signature": signed_query(encrypted, base=captured)["signature"]}  # fmt: skip
    assert post(safe_client, sealed, body).status_code == 200
    assert state.status("m1") == "delivered"
