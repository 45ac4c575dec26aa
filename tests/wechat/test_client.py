"""The WeChat client: errcodes become typed errors, and no URL with a token leaks into them."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import requests
import responses

from notifier.errors import (
    AccountError,
    DailyQuotaError,
    MinuteQuotaError,
    PermanentError,
    TokenError,
    TransientError,
    WeChatError,
    error_for,
)
from notifier.wechat.client import Credentials, WeChatClient

BASE = "https://wechat.test"
SEND = f"{BASE}/cgi-bin/message/template/send"
BODY = {"touser": "oUser0001", "template_id": "T", "data": {"k": {"value": "v"}}}


def client(token_api: str = "stable") -> WeChatClient:
    return WeChatClient(Credentials(BASE, "wx_app", "s3cr3t-value", token_api, 0.5, 0.5))


@pytest.mark.parametrize(
    ("errcode", "kind"),
    [
        (-1, TransientError),
        (45011, MinuteQuotaError),
        (40001, TokenError),
        (40014, TokenError),
        (42001, TokenError),
        (45009, DailyQuotaError),
        (40003, PermanentError),
        (43004, PermanentError),
        (43019, PermanentError),
        (40037, AccountError),
        (47003, PermanentError),
        (40164, AccountError),
        (99999, PermanentError),
    ],
)
def test_errcodes_map_to_their_class(errcode: int, kind: type) -> None:
    error = error_for(errcode, "msg")
    assert type(error) is kind
    assert error.errcode == errcode


def test_minute_quota_is_retried_as_transient_and_accounts_as_permanent() -> None:
    assert isinstance(error_for(45011, ""), TransientError)
    assert isinstance(error_for(40164, ""), PermanentError)


@responses.activate
def test_send_returns_the_msgid_and_posts_the_body_with_the_token() -> None:
    call = responses.post(SEND, json={"errcode": 0, "errmsg": "ok", "msgid": 200228332})
    assert client().send_template("TOKEN1", BODY) == 200228332
    assert call.calls[0].request.url == f"{SEND}?access_token=TOKEN1"
    assert json.loads(call.calls[0].request.body) == BODY


@responses.activate
@pytest.mark.parametrize(
    ("errcode", "kind"), [(40001, TokenError), (43004, PermanentError), (-1, TransientError)]
)
def test_send_raises_the_class_of_the_errcode(errcode: int, kind: type[WeChatError]) -> None:
    responses.post(SEND, json={"errcode": errcode, "errmsg": "no"})
    with pytest.raises(kind) as info:
        client().send_template("T", BODY)
    assert info.value.errcode == errcode


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_transient(status: int) -> None:
    responses.post(SEND, status=status, body="upstream sad")
    with pytest.raises(TransientError, match=str(status)):
        client().send_template("T", BODY)


@responses.activate
def test_a_404_means_the_api_base_is_wrong() -> None:
    responses.post(SEND, status=404)
    with pytest.raises(AccountError):
        client().send_template("T", BODY)


@responses.activate
@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout("c"), requests.ReadTimeout("r"), requests.ConnectionError("x")],
)
def test_network_failures_are_transient_and_never_show_the_token(failure: Exception) -> None:
    responses.post(SEND, body=failure)
    with pytest.raises(TransientError) as info:
        client().send_template("SECRET_TOKEN_VALUE", BODY)
    assert "SECRET_TOKEN_VALUE" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@responses.activate
def test_an_answer_that_is_not_json_is_transient() -> None:
    responses.post(SEND, body="<html>gateway</html>")
    with pytest.raises(TransientError, match="not JSON"):
        client().send_template("T", BODY)


@responses.activate
def test_stable_token_posts_the_credentials() -> None:
    call = responses.post(
        f"{BASE}/cgi-bin/stable_token", json={"access_token": "AT", "expires_in": 7200}
    )
    token = client().fetch_token(force_refresh=True)
    assert (token.value, token.expires_in) == ("AT", 7200)
    assert json.loads(call.calls[0].request.body) == {
        "grant_type": "client_credential",
        "appid": "wx_app",
        "secret": "s3cr3t-value",
        "force_refresh": True,
    }


@responses.activate
def test_classic_token_uses_the_query_string() -> None:
    call = responses.get(f"{BASE}/cgi-bin/token", json={"access_token": "AT2", "expires_in": 7200})
    assert client("classic").fetch_token().value == "AT2"
    assert "grant_type=client_credential" in call.calls[0].request.url


@responses.activate
def test_a_bad_secret_is_an_account_error() -> None:
    responses.post(
        f"{BASE}/cgi-bin/stable_token", json={"errcode": 40125, "errmsg": "invalid appsecret"}
    )
    with pytest.raises(AccountError):
        client().fetch_token()


@responses.activate
def test_the_body_is_utf8_json_so_chinese_text_is_sent_as_is() -> None:
    responses.post(SEND, json={"errcode": 0, "msgid": 1})
    client().send_template("tok", {**BODY, "data": {"thing1": {"value": "订单已发货"}}})
    sent = responses.calls[0].request
    assert isinstance(sent.body, bytes)
    assert "订单已发货".encode() in sent.body
    assert sent.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(sent.headers["Content-Length"]) == len(sent.body)


def test_calls_go_through_the_configured_proxy() -> None:
    proxied = WeChatClient(
        Credentials(BASE, "wx_app", "s", "stable", 0.5, 0.5,
                    proxies=(("https", "http://egress.internal:3128"),))
    )  # fmt: skip
    with responses.RequestsMock() as mock:
        mock.post(SEND, json={"errcode": 0, "msgid": 1})
        proxied.send_template("tok", BODY)
        # responses records the adapter's keyword arguments on the request it saw.
        assert mock.calls[0].request.req_kwargs["proxies"] == {  # type: ignore[attr-defined]
            "https": "http://egress.internal:3128"
        }


def _one_answer_server(answer: bytes) -> tuple[str, threading.Thread]:
    """A local server that reads one request, writes `answer` raw, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, listener:
            connection.recv(65536)
            connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


def test_a_body_cut_off_mid_read_is_transient() -> None:
    # Headers promise 200 bytes; the connection closes after 10.
    base, thread = _one_answer_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        b'{"errcode"'
    )
    cut = WeChatClient(Credentials(base, "wx_app", "s3cr3t-value", "stable", 0.5, 0.5))
    with pytest.raises(TransientError) as info:
        cut.send_template("SECRET_TOKEN_VALUE", BODY)
    assert "SECRET_TOKEN_VALUE" not in str(info.value)
    thread.join(timeout=5)


def test_a_ca_bundle_is_used_to_verify_wechat() -> None:
    bundled = WeChatClient(
        Credentials(BASE, "wx_app", "s", "stable", 0.5, 0.5, "/etc/egress-ca.pem")
    )
    with responses.RequestsMock() as mock:
        mock.post(SEND, json={"errcode": 0, "msgid": 1})
        bundled.send_template("tok", BODY)
        sent = mock.calls[0].request
        assert sent.req_kwargs["verify"] == "/etc/egress-ca.pem"  # type: ignore[attr-defined]
