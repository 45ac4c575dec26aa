"""Just enough HTTP/1.1 framing for the fake's asyncio server, kept apart so it can be tested."""

import asyncio
import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qsl

# Imported for its side effect: it registers the codec error handler Flask's query parsing uses.
import werkzeug.urls  # noqa: F401
from werkzeug.http import HTTP_STATUS_CODES

MAX_HEADERS = 100
MAX_BODY = 10 * 1024 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BadRequest(Exception):
    """A request that is answered with an error status, after which the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request; header names are lower case, repeated ones joined by commas."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequest(431, "too many header fields")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not target.startswith(("/", "http://", "https://")) and target != "*":
        raise BadRequest(400, "malformed request target")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        status = 505 if _VERSION.fullmatch(version) else 400
        raise BadRequest(status, "unsupported protocol version")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest(400, "malformed header field")
        name, value = name.lower(), value.strip(" \t")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return method, target, version, headers


def _body_length(headers: dict[str, str]) -> int:
    coding = headers.get("transfer-encoding")
    if coding is not None:
        chunked = coding.rsplit(",", 1)[-1].strip().lower() == "chunked"
        raise BadRequest(411 if chunked else 400, "only Content-Length bodies are supported")
    declared = headers.get("content-length")
    if declared is None:
        return 0
    values = {value.strip() for value in declared.split(",")}
    value = values.pop()
    if values or not value.isascii() or not value.isdigit():
        raise BadRequest(400, "malformed Content-Length")
    if int(value) > MAX_BODY:
        raise BadRequest(413, "body too large")
    return int(value)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    options = {option.strip().lower() for option in headers.get("connection", "").split(",")}
    if version == "HTTP/1.1":
        return "close" not in options
    return "keep-alive" in options


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read the next request, or return None once the client closes between requests."""
    head = b""
    while not head:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial.strip():
                raise BadRequest(400, "incomplete request") from None
            return None
        except asyncio.LimitOverrunError:
            raise BadRequest(431, "request head too large") from None
        # Blank lines before a request line are to be ignored.
        head = head.lstrip(b"\r\n")[:-4]
    method, target, version, headers = _parse_head(head)
    length = _body_length(headers)
    body = b""
    if length:
        if version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
            writer.write(_CONTINUE)
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
    return Request(method, target, version, headers, body, _keep_alive(version, headers))


def first_args(query: str) -> dict[str, str]:
    """Parse a query string as Flask does, keeping the first value of a repeated name."""
    first: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"):
        first.setdefault(name, value)
    return first


class _DateCache:
    """The Date header value, computed at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


_date = _DateCache()


def status_line(status: int) -> str:
    """Format a status the way the Flask app's responses spell it."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


def encode_response(
    status: str, headers: list[tuple[str, str]], body: bytes, request: Request | None
) -> bytes:
    """Frame a complete response; no request means an error answer that closes the connection."""
    keep_alive = request is not None and request.keep_alive
    lines = [f"HTTP/1.1 {status}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if not any(name.lower() == "content-length" for name, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Date: {_date()}")
    if not keep_alive:
        lines.append("Connection: close")
    elif request is not None and request.version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + body
