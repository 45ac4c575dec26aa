"""The body deadline: one limit for the whole body, however the bytes trickle in."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from gevent import socket as green_socket
from gunicorn.http.errors import InvalidChunkSize
from werkzeug.exceptions import RequestTimeout

from notifier.config import Settings
from notifier.web.app import create_app
from notifier.web.deadline import BodyDeadline


def _reader(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    start_response("200 OK", [])
    return [body]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def _read_through(server: Any, length: int, seconds: float) -> Any:
    """Run a body-reading app behind the deadline on one end of a socket pair."""
    stream = server.makefile("rb")
    environ = {"gunicorn.socket": server, "wsgi.input": stream, "CONTENT_LENGTH": str(length)}
    try:
        return BodyDeadline(_reader, seconds)(environ, lambda *a: None)
    finally:
        stream.close()


def test_a_body_that_arrives_in_time_is_read_whole(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.sendall(b"x" * 10)
    answer = _read_through(server, 10, 1.0)
    assert answer == [b"x" * 10]
    assert server.gettimeout() is None  # blocking again for the server's own use


def test_a_stalled_body_is_cut_off_on_a_threaded_server(pair: tuple[socket.socket, ...]) -> None:
    server, client = pair
    client.sendall(b"x" * 10)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        _read_through(server, 1000, 0.3)
    assert 0.2 < time.monotonic() - started < 1.0
    assert server.gettimeout() is None


def test_on_greenlets_a_trickle_is_cut_off_at_the_deadline_not_at_each_pause() -> None:
    server, client = green_socket.socketpair()

    def trickle() -> None:  # one byte every 0.05 s: no single wait is long
        while True:
            gevent.sleep(0.05)
            client.sendall(b"x")

    sender = gevent.spawn(trickle)
    started = time.monotonic()
    try:
        with pytest.raises(RequestTimeout):
            _read_through(server, 1000, 0.5)
    finally:
        sender.kill()
        server.close()
        client.close()
    assert 0.4 < time.monotonic() - started < 1.5


def test_the_app_answers_a_late_body_408_and_closes(settings: Settings) -> None:
    app = create_app(settings)
    with app.test_request_context("/v1/messages", method="POST"):
        response = app.make_response(app.handle_user_exception(RequestTimeout()))
    assert response.status_code == 408
    assert response.headers["Connection"] == "close"
    assert response.mimetype == "application/problem+json"


def test_a_large_declared_body_gets_time_for_a_slow_link_and_a_small_one_none() -> None:
    deadline = BodyDeadline(_reader, 5.0)
    assert deadline.seconds_for({"CONTENT_LENGTH": "300"}) == pytest.approx(5.0, abs=0.01)
    assert deadline.seconds_for({"CONTENT_LENGTH": str(4 * 1024 * 1024)}) == pytest.approx(21.0)
    assert deadline.seconds_for({"CONTENT_LENGTH": "²"}) == 5.0
    assert deadline.seconds_for({}) == 5.0


def test_a_body_the_server_cannot_frame_is_a_400_that_closes_the_connection(
    settings: Settings, pair: tuple[socket.socket, ...]
) -> None:
    server, _ = pair

    class BrokenChunks:
        def read(self, size: int = -1) -> bytes:
            raise InvalidChunkSize(b"zz")  # what gunicorn's chunked reader raises

        readline = read

    closed: list[bool] = []

    class Response:
        def force_close(self) -> None:
            closed.append(True)

        def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
            self.status = status

    answer = Response()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/v1/messages", "SERVER_NAME": "test",
        "SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input_terminated": True, "wsgi.input": BrokenChunks(), "gunicorn.socket": server,
        "CONTENT_TYPE": "application/json",
    }  # fmt: skip
    body = b"".join(create_app(settings)(environ, answer.start_response))
    assert answer.status.startswith("400"), (answer.status, body)
    assert b"InvalidChunkSize" in body and b"zz" not in body
    assert closed == [True]
