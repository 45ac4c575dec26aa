"""W3C Trace Context at the door: each request joins its caller's trace, or starts one.

The trace id goes into every log line of the request (notifier.logs) and, through the
record intake writes, into the worker's lines for the same message, so one id finds a
message in every process. A malformed `traceparent` is ignored, never refused: tracing
must not cost a sender its message.
"""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, g, request

from notifier import logs

HEADER = "traceparent"
# version-trace id-parent id-flags, lower-case hex (https://www.w3.org/TR/trace-context/).
# Version ff is invalid; a later version may append fields after a dash, version 00 not.
_TRACEPARENT = re.compile(
    r"(?!ff)([0-9a-f]{2})-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})(-.*)?"
)


def parse(header: str | None) -> tuple[str, str] | None:
    """The trace id and flags of a valid `traceparent`, else None."""
    match = _TRACEPARENT.fullmatch(header.strip()) if header else None
    if match is None or (match.group(1) == "00" and match.group(5)):
        return None
    return match.group(2), match.group(4)


def traceparent(header: str | None) -> str:
    """This hop's `traceparent`: the caller's trace and flags with a span id of our own.

    Without a valid header, a fresh trace, not sampled (nothing here records spans).
    """
    trace_id, flags = parse(header) or (secrets.token_hex(16), "00")
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def trace_id() -> str:
    """The current request's trace id."""
    current: str = g.traceparent
    return current.split("-")[1]


def install(app: Flask) -> None:
    """Give every request its trace and fresh log fields, and every answer its traceparent."""

    @app.before_request
    def begin() -> None:
        # A whole new context per request; it is not cleared at the end, so gunicorn's
        # access line, written after Flask has finished in the same thread, still has it.
        g.traceparent = traceparent(request.headers.get(HEADER))
        logs.start(trace_id=trace_id())

    @app.after_request
    def answer(response: Response) -> Response:
        if "traceparent" in g:  # unless the request failed before it began
            response.headers[HEADER] = g.traceparent
        return response
