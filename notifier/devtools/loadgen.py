"""An HTTP load generator that runs as its own process, so load and server don't share a GIL.

Usage: python -m notifier.devtools.loadgen URL --seconds 5 --connections 16
       [--signed SECRET | --wechat]
Prints one JSON line: {"requests": n, "seconds": s, "rate": n/s, "errors": e}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlsplit

from notifier.signature import signed_headers

BODY = json.dumps(
    {
        "touser": "oLoadFollower0001",
        "template_id": "TPL_LOAD",
        "data": {"thing1": {"value": "load"}},
    },
    separators=(",", ":"),
).encode()


def _requests(
    secret: str | None, count: int, wechat: bool = False
) -> list[tuple[str, bytes | None, dict[str, str]]]:
    """Pre-built requests, signed in advance so the generator measures the server, not HMAC."""
    if wechat:  # template sends straight to a (fake) WeChat, each with its own client_msg_id
        message = json.loads(BODY)
        return [
            ("POST", json.dumps({**message, "client_msg_id": uuid.uuid4().hex}).encode(),
             {"Content-Type": "application/json"})
            for _ in range(count)
        ]  # fmt: skip
    if secret is None:
        return [("GET", None, {})] * count
    built: list[tuple[str, bytes | None, dict[str, str]]] = []
    for _ in range(count):
        headers = signed_headers(secret, f"msg_{uuid.uuid4().hex}", BODY)
        headers["Content-Type"] = "application/json"
        built.append(("POST", BODY, headers))
    return built


def run(
    url: str, seconds: float, connections: int, secret: str | None, wechat: bool = False
) -> dict[str, float]:
    """Drive `url` with keep-alive connections for `seconds`; return counts and the rate."""
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    per_connection = _requests(secret, 20000 if secret or wechat else 1, wechat)
    counts = [0] * connections
    errors = [0] * connections
    deadline = time.monotonic() + seconds

    def drive(slot: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        position = slot
        while time.monotonic() < deadline:
            method, body, headers = per_connection[position % len(per_connection)]
            position += connections
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    errors[slot] += 1
                counts[slot] += 1
            except (OSError, http.client.HTTPException):
                errors[slot] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(counts)
    return {"requests": total, "seconds": elapsed, "rate": total / elapsed, "errors": sum(errors)}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m notifier.devtools.loadgen")
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--signed", metavar="SECRET", default=None)
    parser.add_argument("--wechat", action="store_true", help="URL is a template/send endpoint")
    args = parser.parse_args(argv)
    result = run(args.url, args.seconds, args.connections, args.signed, args.wechat)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
