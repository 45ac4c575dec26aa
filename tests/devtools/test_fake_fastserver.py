"""Tests of the fake's asyncio server over real HTTP, so benchmarks run against checked behaviour."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from notifier.devtools.fake_wechat import FakeConfig, create_fake_app, make_fake_server
from notifier.devtools.fake_wechat.__main__ import main
from notifier.devtools.fake_wechat.fastserver import make_fast_server
from notifier.devtools.fake_wechat.state import FakeState

OPENID = "oAbCdEf123456"
SEND = "/cgi-bin/message/template/send"
CREDENTIALS = {"grant_type": "client_credential", "appid": "wx_dev_app", "secret": "dev_secret"}


def message(**overrides: Any) -> dict[str, Any]:
    return {"touser": OPENID, "template_id": "tpl_1", "data": {"a": {"value": "x"}}, **overrides}


@pytest.fixture
def start() -> Iterator[Callable[..., str]]:
    running: list[tuple[Any, threading.Thread]] = []

    def start(server: str = "asyncio", **overrides: Any) -> str:
        fake = make_fake_server(FakeConfig(**overrides), "127.0.0.1", 0, server=server)
        thread = threading.Thread(target=fake.serve_forever, daemon=True)
        thread.start()
        running.append((fake, thread))
        return f"http://127.0.0.1:{fake.server_port}"

    yield start
    for fake, thread in running:
        fake.shutdown()
        thread.join(timeout=5)
        fake.server_close()
        assert not thread.is_alive()


@pytest.fixture
def base(start: Callable[..., str]) -> str:
    return start()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def stable_token(session: requests.Session, base: str) -> str:
    body = session.post(f"{base}/cgi-bin/stable_token", json=CREDENTIALS, timeout=5).json()
    return str(body["access_token"])


def send(session: requests.Session, base: str, token: str, body: Any = None) -> Any:
    params = {"access_token": token}
    return session.post(f"{base}{SEND}", params=params, json=body or message(), timeout=5)


def stats(session: requests.Session, base: str) -> dict[str, Any]:
    result = session.get(f"{base}/_fake/stats", timeout=5).json()
    assert isinstance(result, dict)
    return result


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def raw_exchange(base: str, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=5) as sock:
        sock.sendall(data)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_both_token_apis(session: requests.Session, base: str) -> None:
    classic = session.get(f"{base}/cgi-bin/token", params=CREDENTIALS, timeout=5).json()
    assert len(classic["access_token"]) >= 64
    assert classic["expires_in"] == 7200
    stable = stable_token(session, base)
    assert stable != classic["access_token"]
    assert stable_token(session, base) == stable
    wrong = session.get(f"{base}/cgi-bin/token", params={**CREDENTIALS, "appid": "wx_x"}, timeout=5)
    assert wrong.json() == {"errcode": 40013, "errmsg": "invalid appid"}
    refused = session.post(f"{base}/cgi-bin/stable_token", data="not json", timeout=5)
    assert refused.json()["errcode"] == 47001
    counters = stats(session, base)
    assert (counters["token_calls"], counters["stable_token_calls"]) == (2, 3)
    assert counters["tokens_issued"] == 2


def test_send_delivers_and_lists_the_message(session: requests.Session, base: str) -> None:
    answer = send(session, base, stable_token(session, base))
    assert answer.json() == {"errcode": 0, "errmsg": "ok", "msgid": 200000001}
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.raw.version == 11
    listed = session.get(f"{base}/_fake/messages", params={"since": 0}, timeout=5).json()
    assert [m["touser"] for m in listed["messages"]] == [OPENID]
    assert session.get(f"{base}/_fake/messages?since=-1", timeout=5).status_code == 400
    assert "200000001" in session.get(f"{base}/", timeout=5).text


def test_dedupe_answers_the_first_msgid_and_delivers_once(
    session: requests.Session, base: str
) -> None:
    token = stable_token(session, base)
    first = send(session, base, token, message(client_msg_id="k1")).json()
    assert send(session, base, token, message(client_msg_id="k1")).json() == first
    counters = stats(session, base)
    assert (counters["delivered"], counters["duplicates_suppressed"]) == (1, 1)


def test_bad_or_missing_token(session: requests.Session, base: str) -> None:
    assert send(session, base, "made-up").json()["errcode"] == 40001
    missing = session.post(f"{base}{SEND}", json=message(), timeout=5).json()
    assert missing == {"errcode": 41001, "errmsg": "access_token missing"}
    assert stats(session, base)["errors_by_code"] == {"40001": 1, "41001": 1}


def test_queued_faults_apply_in_order(session: requests.Session, base: str) -> None:
    token = stable_token(session, base)
    faults = [{"errcode": 45009, "times": 2}, {"http_status": 503}]
    assert session.post(f"{base}/_fake/faults", json=faults, timeout=5).json() == {"queued": 3}
    assert send(session, base, token).json()["errcode"] == 45009
    assert send(session, base, token).json()["errcode"] == 45009
    answer = send(session, base, token)
    assert (answer.status_code, answer.text) == (503, "503 Service Unavailable\n")
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert send(session, base, token).json()["errcode"] == 0
    counters = stats(session, base)
    assert (counters["pending_faults"], counters["http_faults"]) == (0, 1)
    assert counters["errors_by_code"] == {"45009": 2}


def test_delayed_drop_answers_504_without_delivery(session: requests.Session, base: str) -> None:
    session.post(f"{base}/_fake/faults", json={"delay_ms": 200, "drop": True}, timeout=5)
    token = stable_token(session, base)
    began = time.monotonic()
    answer = send(session, base, token)
    assert time.monotonic() - began >= 0.2
    assert answer.status_code == 504
    counters = stats(session, base)
    assert (counters["delivered"], counters["http_faults"]) == (0, 1)


def test_healthz_and_other_routes(session: requests.Session, base: str) -> None:
    answer = session.get(f"{base}/healthz", timeout=5)
    assert (answer.status_code, answer.text) == (200, "ok")
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    # Other methods and paths go through the Flask app.
    wrong_method = session.get(f"{base}{SEND}", timeout=5)
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert session.get(f"{base}/nowhere", timeout=5).status_code == 404
    head = session.head(f"{base}/healthz", timeout=5)
    assert (head.status_code, head.content) == (200, b"")
    assert session.post(f"{base}/_fake/reset", timeout=5).json() == {"reset": True}


def test_answers_are_byte_for_byte_those_of_the_flask_app(
    session: requests.Session, base: str
) -> None:
    client = create_fake_app(FakeConfig()).test_client()
    fast_token = stable_token(session, base)
    flask_token = client.post("/cgi-bin/stable_token", json=CREDENTIALS).get_json()["access_token"]
    bodies: list[bytes | str] = [
        b"not json",
        b"[]",
        b'{"touser": "short"}',
        json.dumps(message(data={"\u00e9": {}})),
    ]
    bodies.append(json.dumps(message()))
    for body in bodies:
        fast = session.post(
            f"{base}{SEND}", params={"access_token": fast_token}, data=body, timeout=5
        )
        flask = client.post(SEND, query_string={"access_token": flask_token}, data=body)
        assert fast.status_code == flask.status_code
        assert fast.headers["Content-Type"] == flask.headers["Content-Type"]
        assert fast.content == flask.data
    fast = session.get(f"{base}/cgi-bin/token", params={"grant_type": "x"}, timeout=5)
    assert fast.content == client.get("/cgi-bin/token?grant_type=x").data


def test_keep_alive_serves_many_requests_on_one_connection(base: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=5)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b"ok"
        sock = connection.sock
        for _ in range(5):
            connection.request("GET", "/_fake/stats")
            answer = connection.getresponse()
            assert answer.status == 200
            assert answer.getheader("Connection") is None
            answer.read()
        assert connection.sock is sock
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        answer = connection.getresponse()
        assert answer.getheader("Connection") == "close"
        assert answer.read() == b"ok"
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1 extra\r\n\r\n", b"400"),
        (b"GET healthz HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n", b"400"),
        (b"POST /_fake/reset HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"POST /_fake/reset HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
        (b"GET /healthz HTTP/1.0\r\n\r\n", b"200"),
    ],
)
def test_malformed_requests_and_http_10_are_answered_then_closed(
    base: str, request_bytes: bytes, status: bytes
) -> None:
    answer = raw_exchange(base, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"\r\nConnection: close\r\n" in answer


def test_latency_is_awaited_concurrently(start: Callable[..., str]) -> None:
    base = start(latency_ms=50)
    with requests.Session() as session:
        token = stable_token(session, base)
    url = f"{base}{SEND}?access_token={token}"

    def one(n: int) -> int:
        return requests.post(url, json=message(client_msg_id=f"c{n}"), timeout=10).status_code

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as pool:
        statuses = list(pool.map(one, range(200)))
    assert time.monotonic() - began < 3
    assert statuses == [200] * 200
    with requests.Session() as session:
        assert stats(session, base)["delivered"] == 200


def test_threaded_server_is_still_available(
    session: requests.Session, start: Callable[..., str]
) -> None:
    base = start(server="threaded")
    assert send(session, base, stable_token(session, base)).json()["errcode"] == 0
    with pytest.raises(ValueError, match="server must be one of"):
        make_fake_server(FakeConfig(), "127.0.0.1", 0, server="forked")


def test_shared_state_and_stopping_before_serving() -> None:
    state = FakeState.build(FakeConfig())
    assert create_fake_app(FakeConfig(), state=state).extensions["fake_wechat"] is state
    with pytest.raises(ValueError, match="different config"):
        create_fake_app(FakeConfig(latency_ms=5), state=state)
    fake = make_fast_server(FakeConfig(), "127.0.0.1", 0)
    fake.shutdown()
    fake.serve_forever()  # returns at once
    fake.server_close()


def test_main_passes_the_chosen_server(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "notifier.devtools.fake_wechat.__main__.serve", lambda *_, **kw: calls.append(kw)
    )
    main(["--server", "threaded"])
    main([])
    assert calls == [{"verbose": False, "server": "threaded"}, {"verbose": False}]


@pytest.mark.parametrize(
    ("server", "signum"),
    [("asyncio", signal.SIGTERM), ("asyncio", signal.SIGINT), ("threaded", signal.SIGTERM)],
)
def test_process_announces_its_port_and_stops_cleanly(server: str, signum: int) -> None:
    args = [
        sys.executable,
        "-m",
        "notifier.devtools.fake_wechat",
        "--port",
        "0",
        "--server",
        server,
    ]
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("fake WeChat listening on http://127.0.0.1:")
        # A call through the Flask app starts a worker thread, which may then get the signal.
        with requests.get(f"{line.rsplit(' ', 1)[1]}/_fake/stats", timeout=5) as answer:
            assert answer.json()["send_calls"] == 0
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert (out, err) == ("", "")
