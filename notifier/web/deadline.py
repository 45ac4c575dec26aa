"""A request body must arrive whole within BODY_TIMEOUT_SECONDS, so a slow client holds nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import gevent
from gevent import socket as green_socket
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, RequestTimeout

T = TypeVar("T")
# Seconds one send to a client may wait on greenlets before the client counts as gone.
SEND_TIMEOUT = 30.0
# Bytes a second a large body is allowed beyond BODY_TIMEOUT_SECONDS: a 4 MiB batch gets 16 s
# more, so a sender on a slow link is not refused for ever, and a small body gets nothing.
SLOW_LINK_BYTES_PER_SECOND = 256 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyDeadline:
    """WSGI middleware: reading the body ends at one deadline for the whole, then 408.

    On the shipped server (gunicorn's gevent workers) a timer interrupts the read wherever
    it waits, so a byte every few seconds cannot stretch it. On a threaded server the
    socket's timeout bounds each wait instead: a stalled client is cut off, a trickling one
    only once it stalls. The app answers RequestTimeout with 408 and closes the connection.
    Under a server that exposes no socket (the test client) the body is read as it is.
    """

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sock = environ.get("gunicorn.socket")
        if not isinstance(sock, socket.socket | green_socket.socket):
            return self._app(environ, start_response)
        # After the body, the socket's timeout bounds each send: a client that stops reading
        # its answers is dropped. Threads keep blocking sockets: the server manages those.
        after = SEND_TIMEOUT if isinstance(sock, green_socket.socket) else None
        if _has_body(environ):
            deadline = time.monotonic() + self.seconds_for(environ)
            environ["wsgi.input"] = _DeadlineInput(
                environ["wsgi.input"], sock, deadline, lambda: _close_after(start_response)
            )
        try:
            return self._app(environ, start_response)
        finally:
            sock.settimeout(after)

    def seconds_for(self, environ: dict[str, Any]) -> float:
        """The time a body has: the setting, and more for a declared length on a slow link."""
        length = environ.get("CONTENT_LENGTH", "")
        declared = int(length) if length.isascii() and length.isdigit() and len(length) <= 12 else 0
        return self._seconds + declared / SLOW_LINK_BYTES_PER_SECOND


def _close_after(start_response: Callable[..., Any]) -> None:
    """Close the connection after this answer: the rest of a late body can't be told apart.

    An app's own `Connection: close` is dropped by the server as hop-by-hop, so the
    server's response object is told directly where it offers that.
    """
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):
        force_close()


def _has_body(environ: dict[str, Any]) -> bool:
    length = environ.get("CONTENT_LENGTH", "")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or (length not in ("", "0"))


class _DeadlineInput:
    """The body stream, every read bounded by the time left before the deadline.

    A body the server cannot frame (a chunk size that is not hex, a missing terminator) is
    the client's error: 400, and the connection closed, as nothing after it can be read.
    """

    def __init__(
        self,
        stream: Any,
        sock: socket.socket | green_socket.socket,
        deadline: float,
        close: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._sock = sock
        self._deadline = deadline
        self._close = close
        self._green = isinstance(sock, green_socket.socket)

    def read(self, size: int | None = -1) -> bytes:
        return bytes(self._bounded(lambda: self._stream.read(size)))

    def readline(self, size: int | None = -1) -> bytes:
        return bytes(self._bounded(lambda: self._stream.readline(size)))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _bounded(self, read: Callable[[], T]) -> T:
        try:
            return self._in_time(read)
        except ParseException as exc:
            self._close()
            # The class only: the server's text quotes the client's bytes.
            raise BadRequest(f"the request body's framing is broken ({type(exc).__name__}); "
                             "the connection is closed") from None  # fmt: skip

    def _in_time(self, read: Callable[[], T]) -> T:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        if not self._green:
            self._sock.settimeout(left)
            try:
                return read()
            except TimeoutError:
                raise self._late() from None
        timer = gevent.Timeout(left)
        timer.start()
        try:
            return read()
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            raise self._late() from None
        finally:
            timer.close()

    def _late(self) -> RequestTimeout:
        self._close()
        return RequestTimeout("the request body did not arrive in time; the connection is closed")
