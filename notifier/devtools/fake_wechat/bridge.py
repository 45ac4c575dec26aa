"""Calls the Flask app for one parsed request, so the control routes have a single source."""

import io
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit
from wsgiref.types import WSGIApplication

from .wire import Request

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]
Reply = tuple[str, list[tuple[str, str]], bytes]


def _wsgi_str(text: str) -> str:
    # WSGI carries text as UTF-8 bytes spelled as a latin-1 str, as the threaded server does.
    return text.encode().decode("latin-1")


def build_environ(
    request: Request, server: tuple[str, int], peer: tuple[str, int]
) -> dict[str, Any]:
    """Describe a request to a WSGI app the way the threaded server would."""
    url = urlsplit(request.target)
    # A path starting with two slashes is parsed as a host; put it back into the path.
    path = f"/{url.netloc}{url.path}" if not url.scheme and url.netloc else url.path
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": "fake-wechat",
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": _wsgi_str(unquote(path)),
        "QUERY_STRING": _wsgi_str(url.query),
        "REQUEST_URI": _wsgi_str(request.target),
        "RAW_URI": _wsgi_str(request.target),
        "REMOTE_ADDR": peer[0],
        "REMOTE_PORT": peer[1],
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": request.version,
    }
    for name, value in request.headers.items():
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        environ[key] = value
    if url.scheme and url.netloc:
        environ["HTTP_HOST"] = url.netloc
    return environ


class _Collector:
    """The start_response callable, keeping status and headers until the body is complete."""

    def __init__(self) -> None:
        self.status = "500 INTERNAL SERVER ERROR"
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        # Nothing is sent before the app returns, so a later call may always replace the first.
        self.status, self.headers = status, list(headers)
        return self.chunks.append


def call_app(app: WSGIApplication, environ: dict[str, Any]) -> Reply:
    """Run the app to completion, in a worker thread, and return its whole response."""
    collector = _Collector()
    result = app(environ, collector)
    try:
        collector.chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return collector.status, collector.headers, b"".join(collector.chunks)
