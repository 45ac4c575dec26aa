"""/wechat/callback: handshake, signed receipts in plain and safe mode, and hostile XML refused."""

from __future__ import annotations

import base64
import itertools
import os
import time
from dataclasses import replace

import pytest
import redis
from flask.testing import FlaskClient

from notifier.config import Settings
from notifier.store.messages import MessageState
from notifier.web.app import create_app
from notifier.wechat.receipts import CallbackVerifier, sha1_signature

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
    configured = replace(settings, wechat_callback_token=TOKEN, wechat_encoding_aes_key=AES_KEY)
    return create_app(configured).test_client()


def test_the_handshake_echoes_echostr_when_signed(client: FlaskClient) -> None:
    response = client.get("/wechat/callback", query_string={**signed_query(), "echostr": "e123"})
    assert (response.status_code, response.text) == (200, "e123")
    forged = client.get(
        "/wechat/callback", query_string={**query(), "signature": "0" * 40, "echostr": "e"}
    )
    assert forged.status_code == 403


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


def test_a_safe_mode_receipt_is_decrypted(client: FlaskClient, state: MessageState) -> None:
    sealer = CallbackVerifier(TOKEN, "wx_test_app", AES_KEY)
    encrypted = sealer.encrypt(receipt_xml(200163836), "wx_test_app")
    body = f"<xml><ToUserName>gh_1</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    params = safe_mode_query(encrypted)
    response = client.post("/wechat/callback", query_string=params, data=body)
    assert (response.status_code, response.text) == (200, "success")
    assert state.status("m1") == "delivered"


def test_a_safe_mode_receipt_for_another_app_is_refused(
    client: FlaskClient, state: MessageState
) -> None:
    sealer = CallbackVerifier(TOKEN, "wx_other", AES_KEY)
    encrypted = sealer.encrypt(receipt_xml(200163836), "wx_other")
    body = f"<xml><Encrypt>{encrypted}</Encrypt></xml>"
    params = safe_mode_query(encrypted)
    assert client.post("/wechat/callback", query_string=params, data=body).status_code == 400
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
