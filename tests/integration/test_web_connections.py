"""The web as the Procfile runs it, on client connections: slow ones are cut off, none leaks."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from notifier.client import NotifierClient, template_message
from notifier.devtools.devstack import web_command
from notifier.devtools.measures import ok as web_answers
from notifier.signature import signed_headers
from tests.integration.conftest import Stack, wait_for

SLOW_BODIES = 200
SLOW_HEADERS = 50
BODY_TIMEOUT = 5  # the default BODY_TIMEOUT_SECONDS


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis and the web as the Procfile runs it (its worker count too); nothing else."""
    stack = Stack(tmp_path_factory.mktemp("slow"))
    try:
        stack.redis.start()
        stack.spawn("web", web_command(stack.web_port))
        wait_for(lambda: web_answers(f"{stack.web}/healthz"), what="the web app")
        yield stack
    finally:
        stack.stop()


def _slow_body(stack: Stack, index: int) -> socket.socket:
    """A signed post whose Content-Length promises 100 bytes more than are ever sent."""
    body = json.dumps(template_message(f"oSlow{index:06d}", "TPL_SLOW", {"thing1": "x"})).encode()
    headers = signed_headers(stack.secret, f"msg_slow_{index}", body)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) + 100}\r\n{head}\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", stack.web_port), timeout=60)
    sock.sendall(request + body)
    return sock


def _slow_headers(stack: Stack) -> socket.socket:
    """A request whose headers never end."""
    sock = socket.create_connection(("127.0.0.1", stack.web_port), timeout=60)
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def _closed_after(sock: socket.socket, opened: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it answered first."""
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return time.monotonic() - opened, answer


def _timed(call: object) -> float:
    started = time.monotonic()
    assert callable(call)
    call()
    return time.monotonic() - started


def test_slow_clients_are_cut_off_and_hold_up_nobody(web: Stack) -> None:
    opened = time.monotonic()
    slow = [_slow_body(web, i) for i in range(SLOW_BODIES)]
    slow += [_slow_headers(web) for _ in range(SLOW_HEADERS)]
    session = requests.Session()

    def healthz() -> None:
        assert session.get(f"{web.web}/healthz", timeout=5).status_code == 200

    def signed_post() -> None:
        message = template_message("oPatient000001", "TPL_SLOW", {"thing1": "waiting"})
        assert web.client().post_message(message, timeout=5).status_code == 202

    # While every slow connection is still held open by its client.
    waits = [_timed(check) for _ in range(5) for check in (healthz, signed_post)]
    assert time.monotonic() - opened < BODY_TIMEOUT, "the checks ran after the cut-off"
    assert max(waits) < 2, f"others waited behind slow clients: {waits}"

    with ThreadPoolExecutor(64) as pool:
        closed = list(pool.map(lambda s: _closed_after(s, opened), slow))
    seconds = [after for after, _ in closed]
    assert max(seconds) < 30, f"slowest connection closed after {max(seconds):.1f} s"
    # Slow bodies are answered 408 at the deadline; slow headers are dropped without one.
    bodies = [answer for _, answer in closed[:SLOW_BODIES]]
    timed_out = sum(answer.startswith(b"HTTP/1.1 408") for answer in bodies)
    assert timed_out == SLOW_BODIES, [a[:40] for a in bodies if not a.startswith(b"HTTP/1.1 408")]
    assert all(b"\r\nConnection: close\r\n" in answer for answer in bodies), bodies[0][:300]
    assert min(seconds[:SLOW_BODIES]) >= BODY_TIMEOUT - 0.5
    print(f"slow clients: {len(slow)} closed after {min(seconds):.1f}-{max(seconds):.1f} s; "
          f"others answered in at most {max(waits):.2f} s")  # fmt: skip


def test_each_client_connection_gives_its_redis_connection_back(web: Stack) -> None:
    def post_on_a_new_connection(index: int) -> None:
        message = template_message(f"oShort{index:06d}", "TPL_SHORT", {"thing1": "x"})
        with requests.Session() as session:
            client = NotifierClient(web.web, web.secret, session=session)
            assert client.post_message(message, timeout=5).status_code == 202

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post_on_a_new_connection, range(400)))
    redis_client = web.redis_client()
    try:
        # The web's two processes, 16 clients at a time: far fewer than 400 connections.
        wait_for(lambda: len(redis_client.client_list()) < 60, 10, "connections given back")
        print(f"redis connections after 400 client connections: {len(redis_client.client_list())}")
    finally:
        redis_client.close()
