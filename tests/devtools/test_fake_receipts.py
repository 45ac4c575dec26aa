"""The fake's delivery receipts, checked by the web's own verifier so the dev stack trusts them."""

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from notifier.devtools.fake_wechat import FakeConfig, create_fake_app, make_fake_server
from notifier.devtools.fake_wechat import receipts as fake_receipts
from notifier.devtools.fake_wechat.__main__ import main
from notifier.devtools.fake_wechat.receipts import (
    SUCCESS,
    SYSTEM_FAILED,
    USER_BLOCK,
    Push,
    ReceiptPusher,
    receipt_status,
    receipt_xml,
    signed_push,
)
from notifier.wechat.receipts import CallbackVerifier, Receipt, parse_xml, receipt_from

TOKEN = "receipt_token"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
URL = "http://127.0.0.1:9/wechat/callback"
CREDENTIALS = {"grant_type": "client_credential", "appid": "wx_dev_app", "secret": "dev_secret"}
OPENIDS = [f"oOpenid{i:06d}" for i in range(10_000)]


def opened(push: Push, verifier: CallbackVerifier) -> Receipt | None:
    """What the web makes of a push: signatures checked, envelope opened, receipt read."""
    params = push.params
    verifier.check(params["signature"], params["timestamp"], params["nonce"])
    fields = parse_xml(push.body)
    if params.get("encrypt_type") == "aes":
        sealed = fields["Encrypt"]
        verifier.check(params["msg_signature"], params["timestamp"], params["nonce"], sealed)
        fields = parse_xml(verifier.decrypt(sealed))
    return receipt_from(fields)


def test_a_plain_receipt_passes_the_webs_verifier() -> None:
    config = FakeConfig(callback_url=URL, callback_token=TOKEN)
    xml = receipt_xml("oFollower0001", 200000007, SUCCESS, 1_700_000_000)
    push = signed_push(config, "oFollower0001", xml, 1_700_000_000, "12345")
    assert push.params["timestamp"] == "1700000000" and push.params["openid"] == "oFollower0001"
    assert opened(push, CallbackVerifier(TOKEN)) == Receipt(200000007, True, "success")
    fields = parse_xml(push.body)
    assert fields["ToUserName"].startswith("gh_") and fields["FromUserName"] == "oFollower0001"
    assert (fields["MsgType"], fields["Event"]) == ("event", "TEMPLATESENDJOBFINISH")
    assert fields["CreateTime"] == "1700000000"


def test_a_receipt_signed_with_another_token_is_refused() -> None:
    config = FakeConfig(callback_url=URL, callback_token="other")
    push = signed_push(config, "oF0001", receipt_xml("oF0001", 1, SUCCESS, 1), 1, "7")
    with pytest.raises(Exception, match="signature"):
        opened(push, CallbackVerifier(TOKEN))


def test_a_safe_mode_receipt_is_opened_by_the_webs_verifier() -> None:
    config = FakeConfig(callback_url=URL, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    xml = receipt_xml("oFollower0002", 42, USER_BLOCK, 1_700_000_000)
    push = signed_push(config, "oFollower0002", xml, 1_700_000_000, "99")
    assert push.params["encrypt_type"] == "aes"
    assert b"oFollower0002" not in push.body
    verifier = CallbackVerifier(TOKEN, config.app_id, AES_KEY)
    assert opened(push, verifier) == Receipt(42, False, "failed:user block")


def test_blocked_openids_are_fixed_per_openid_and_near_their_share() -> None:
    blocked = [o for o in OPENIDS if receipt_status(o, 0.3) == USER_BLOCK]
    assert blocked == [o for o in OPENIDS if receipt_status(o, 0.3) == USER_BLOCK]
    assert 0.27 < len(blocked) / len(OPENIDS) < 0.33
    # A larger share keeps every openid already blocked: raising it only adds failures.
    assert set(blocked) <= {o for o in OPENIDS if receipt_status(o, 0.5) == USER_BLOCK}
    assert {receipt_status(o, 0.0) for o in OPENIDS} == {SUCCESS}
    assert {receipt_status(o, 1.0) for o in OPENIDS} == {USER_BLOCK}


def test_system_failures_take_the_share_after_the_blocked_one() -> None:
    statuses = [receipt_status(o, 0.2, 0.1) for o in OPENIDS]
    assert 0.07 < statuses.count(SYSTEM_FAILED) / len(OPENIDS) < 0.13
    assert all(
        (s == USER_BLOCK) == (receipt_status(o, 0.2) == USER_BLOCK)
        for o, s in zip(OPENIDS, statuses, strict=True)
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"callback_url": URL},  # nothing to sign with
        {"callback_url": "ftp://x", "callback_token": TOKEN},
        {"encoding_aes_key": "short"},
        {"encoding_aes_key": "!" * 43},
        {"blocked_share": 1.5},
        {"blocked_share": 0.6, "system_failed_share": 0.6},
        {"receipt_delay_ms": -1},
        {"receipt_delay_ms": float("inf")},
    ],
)
def test_bad_receipt_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FakeConfig(**overrides)


class Recorder:
    """A post function that keeps what it was given, failing on request."""

    def __init__(self, failures: int = 0) -> None:
        self.pushes: list[tuple[str, Push]] = []
        self.failures = failures
        self.arrived = threading.Semaphore(0)

    def __call__(self, session: requests.Session, url: str, push: Push) -> None:
        self.arrived.release()
        if self.failures:
            self.failures -= 1
            raise requests.ConnectionError("refused")
        self.pushes.append((url, push))

    def wait(self, count: int) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=5), "no push arrived"


def test_the_pusher_posts_after_its_delay_and_survives_failures() -> None:
    recorder = Recorder(failures=1)
    config = FakeConfig(callback_url=URL, callback_token=TOKEN, receipt_delay_ms=50)
    pusher = ReceiptPusher(config, post=recorder)
    try:
        pusher.submit("oFirst0001", 1)
        pusher.submit("oSecond0002", 2)
        recorder.wait(2)
    finally:
        pusher.close()
    assert [push.params["openid"] for url, push in recorder.pushes] == ["oSecond0002"]
    assert opened(recorder.pushes[0][1], CallbackVerifier(TOKEN)) == Receipt(2, True, "success")
    assert pusher.stats() == {"pushed": 1, "failed": 1, "dropped": 0, "pending": 0}


def test_without_a_callback_url_nothing_is_queued_or_started() -> None:
    recorder = Recorder()
    pusher = ReceiptPusher(FakeConfig(), post=recorder)
    pusher.submit("oFirst0001", 1)
    assert pusher.stats()["pending"] == 0
    assert not any(t.name == "fake-receipts" for t in threading.enumerate() if t.is_alive())


def test_receipts_beyond_the_queue_limit_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_receipts, "QUEUE_LIMIT", 1)
    monkeypatch.setattr(fake_receipts, "POSTERS", 0)  # nobody takes from the queue
    pusher = ReceiptPusher(FakeConfig(callback_url=URL, callback_token=TOKEN), post=Recorder())
    pusher.submit("oFirst0001", 1)
    pusher.submit("oSecond0002", 2)
    assert pusher.stats() == {"pushed": 0, "failed": 0, "dropped": 1, "pending": 1}


def test_the_control_api_changes_receipt_settings_at_run_time() -> None:
    client = create_fake_app(FakeConfig()).test_client()
    assert client.get("/_fake/receipts").get_json()["callback_url"] == ""
    answer = client.post(
        "/_fake/receipts",
        json={"callback_url": URL, "callback_token": TOKEN, "blocked_share": 0.25},
    )
    assert answer.status_code == 200, answer.get_json()
    view = answer.get_json()
    assert (view["callback_url"], view["blocked_share"], view["safe_mode"]) == (URL, 0.25, False)
    assert "callback_token" not in view
    for bad in ({"blocked_share": 2}, {"blocked_share": True}, {"colour": "red"}, [1]):
        assert client.post("/_fake/receipts", json=bad).status_code == 400, bad
    assert client.get("/_fake/receipts").get_json()["blocked_share"] == 0.25


class _Callback(BaseHTTPRequestHandler):
    """A stand-in for the web's /wechat/callback that verifies as the web does."""

    received: ClassVar[list[Receipt | None]] = []
    arrived = threading.Semaphore(0)

    def do_POST(self) -> None:
        query = dict(parse_qsl(urlsplit(self.path).query))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(opened(Push(query, body), CallbackVerifier(TOKEN)))
        self.send_response(200)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"success")
        type(self).arrived.release()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def callback_url() -> Iterator[str]:
    _Callback.received, _Callback.arrived = [], threading.Semaphore(0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/wechat/callback"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", ["asyncio", "threaded"])
def test_a_send_to_either_server_is_followed_by_its_receipt(callback_url: str, kind: str) -> None:
    fine = next(o for o in OPENIDS if receipt_status(o, 0.5) == SUCCESS)
    blocked = next(o for o in OPENIDS if receipt_status(o, 0.5) == USER_BLOCK)
    config = FakeConfig(callback_url=callback_url, callback_token=TOKEN, blocked_share=0.5)
    fake = make_fake_server(config, "127.0.0.1", 0, server=kind)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    send = f"http://127.0.0.1:{fake.server_port}/cgi-bin/message/template/send"
    try:
        with requests.Session() as session:
            token = session.get(
                f"http://127.0.0.1:{fake.server_port}/cgi-bin/token", params=CREDENTIALS, timeout=5
            ).json()["access_token"]
            sent = {}
            for openid in (fine, blocked):
                body = {"touser": openid, "template_id": "t", "data": {"a": {"value": "x"}}}
                answer = session.post(send, params={"access_token": token}, json=body, timeout=5)
                sent[answer.json()["msgid"]] = openid
            refused = session.post(send, params={"access_token": token}, json={}, timeout=5)
            assert refused.json()["errcode"] != 0
        for _ in sent:
            assert _Callback.arrived.acquire(timeout=5), "a receipt did not arrive"
        got = {r.msgid: r.reason for r in _Callback.received if r is not None}
        assert got == {msgid: receipt_status(o, 0.5) for msgid, o in sent.items()}
        assert set(got.values()) == {SUCCESS, USER_BLOCK}
        assert not _Callback.arrived.acquire(timeout=0.3), "a refused send got a receipt"
    finally:
        fake.shutdown()
        thread.join(timeout=5)
        fake.server_close()


def test_main_reads_the_receipt_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[FakeConfig] = []

    def fake_serve(config: FakeConfig, host: str, port: int, *, verbose: bool) -> None:
        calls.append(config)

    monkeypatch.setattr("notifier.devtools.fake_wechat.__main__.serve", fake_serve)
    main(["--callback-url", URL, "--callback-token", TOKEN, "--receipt-delay-ms", "10",
          "--blocked-share", "0.1", "--system-failed-share", "0.05"])  # fmt: skip
    assert calls == [
        FakeConfig(callback_url=URL, callback_token=TOKEN, receipt_delay_ms=10,
                   blocked_share=0.1, system_failed_share=0.05)
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        main(["--callback-url", URL])  # no token to sign with
