"""RFC 9457 problem details, so every refusal has the same machine-readable shape."""

from __future__ import annotations

from typing import Any

from flask import Response, json

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(status: int, detail: str, challenge: str = "Signature", **extra: Any) -> Response:
    """Build a problem+json response with the given status and human-readable detail."""
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    if status == 401:
        response.headers["WWW-Authenticate"] = f'{challenge} realm="notifier"'
    if status == 408:
        # The rest of the body may still be on its way: nothing after it can be read.
        response.headers["Connection"] = "close"
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response
