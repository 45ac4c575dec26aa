"""The wrk driver: its pre-signed request files, its command line, reading wrk's output, and
(where wrk is installed) the Lua script against a small server that checks each signature."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from notifier.devtools import wrkload
from notifier.devtools.loadgen import BODY
from notifier.errors import SignatureError
from notifier.signature import Verifier, new_secret

# Captured from wrk 4.1.0 (Debian) driving the bench's gunicorn with the script: 16
# connections, one second, 3,000 pre-signed requests a thread; then the same with a wrong
# secret, every request refused with 401.
SIGNED = """\
Running 1s test @ http://127.0.0.1:38029/v1/messages
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.58ms    4.85ms  28.51ms   66.52%
    Req/Sec     0.95k   291.81     1.73k    80.95%
  1990 requests in 1.10s, 423.65KB read
Requests/sec:   1811.30
Transfer/sec:    385.61KB
wrk-json {"requests": 1990, "duration_us": 1098658, "status_errors": 0, "socket_errors": 0, "reused": 0}
"""
REFUSED = """\
Running 1s test @ http://127.0.0.1:38029/v1/messages
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.07ms    4.18ms  43.34ms   88.60%
    Req/Sec     1.96k     0.90k    4.36k    80.95%
  4147 requests in 1.06s, 1.34MB read
  Non-2xx or 3xx responses: 4147
Requests/sec:   3916.98
Transfer/sec:      1.27MB
wrk-json {"requests": 4147, "duration_us": 1058723, "status_errors": 4147, "socket_errors": 0, "reused": 0}
"""


def test_the_request_file_holds_the_body_then_unique_ids_each_validly_signed(
    tmp_path: Path,
) -> None:
    secret, now = new_secret(), 1_700_000_000
    path = tmp_path / "requests-0.txt"

    wrkload.write_requests(path, secret, 500, now=now)

    body, *lines = path.read_text().splitlines()
    assert body.encode() == BODY
    assert len(lines) == 500
    verifier = Verifier([secret])
    ids = []
    for line in lines:
        msg_id, timestamp, signature = line.split(" ")
        headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp,
                   "webhook-signature": signature}  # fmt: skip
        ids.append(verifier.verify(headers, BODY, now=now + 60))
        assert int(timestamp) == now
    assert len(set(ids)) == 500
    # Still good well after a run; refused once the 5-minute tolerance has passed.
    with pytest.raises(SignatureError):
        verifier.verify(headers, BODY, now=now + 301)


def test_wrk_output_reads_as_requests_rate_and_errors() -> None:
    signed = wrkload.parse(SIGNED)
    assert signed["requests"] == 1990
    assert signed["seconds"] == pytest.approx(1.098658)
    assert signed["rate"] == pytest.approx(1811.30, abs=0.01)  # as wrk itself prints
    assert signed["errors"] == 0 and signed["reused"] == 0
    refused = wrkload.parse(REFUSED)
    assert refused["errors"] == 4147
    assert refused["rate"] == pytest.approx(3916.98, abs=0.01)
    with pytest.raises(ValueError, match="no result line"):
        wrkload.parse(SIGNED.replace("wrk-json", "something"))


def test_enough_requests_for_a_run_at_the_trivial_sides_best_rate() -> None:
    assert wrkload.requests_needed(4000, 5) >= 4000 * 5
    # wrk runs whole seconds: a half-second smoke run lasts one.
    assert wrkload.requests_needed(4000, 0.5) >= 4000
    assert wrkload.requests_needed(0, 2) >= 1000 * 2  # no trivial run yet


def test_the_command_line_is_light_and_in_whole_seconds(tmp_path: Path) -> None:
    script = tmp_path / "ingest.lua"
    args = wrkload.command("wrk", "http://127.0.0.1:1/v1/messages", 2.4, 16, script, "r-")
    assert args[:4] == ["wrk", "-t2", "-c16", "-d2s"]
    assert args[-2:] == ["--", "r-"]
    # Never more threads than connections: wrk refuses that.
    assert wrkload.command("wrk", "http://x/", 0.5, 1, script)[1:4] == ["-t1", "-c1", "-d1s"]


def test_without_wrk_or_within_the_signatures_tolerance_the_measure_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(wrkload.ENV, "")
    assert "wrk is not on PATH" in str(wrkload.unavailable(5))
    monkeypatch.setenv(wrkload.ENV, "/nonexistent/wrk")
    assert wrkload.unavailable(5) is not None
    monkeypatch.setenv(wrkload.ENV, "sh")  # any program on PATH
    assert wrkload.unavailable(5) is None
    assert "tolerance" in str(wrkload.unavailable(600))


# The Lua script under real wrk ------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    verifier: Verifier
    seen: list[str]
    refused: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    server: _Server

    def do_GET(self) -> None:
        self._answer(200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            msg_id = self.server.verifier.verify(dict(self.headers.items()), body)
        except SignatureError:
            self.server.refused += 1
            self._answer(401)
            return
        assert body == BODY and self.headers["Content-Type"] == "application/json"
        self.server.seen.append(msg_id)
        self._answer(202)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[_Server, str]]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.refused = [], 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


needs_wrk = pytest.mark.skipif(wrkload.binary() is None, reason="wrk is not installed")


@needs_wrk
@pytest.mark.integration
def test_wrk_sends_each_signed_request_once_and_counts_any_it_had_to_repeat(
    server: tuple[_Server, str],
) -> None:
    httpd, url = server
    secret = new_secret()
    httpd.verifier = Verifier([secret])

    plenty = wrkload.run(f"{url}/v1/messages", 1, 4, secret, count=40_000)

    assert httpd.refused == 0 and plenty["errors"] == 0
    assert plenty["requests"] > 0 and plenty["reused"] == 0
    assert len(set(httpd.seen)) == len(httpd.seen) >= plenty["requests"]

    httpd.seen.clear()
    few = wrkload.run(f"{url}/v1/messages", 1, 4, secret, count=20)
    assert few["reused"] > 0  # reported, so the bench can refuse a flattered number
    assert len(set(httpd.seen)) == 20


@needs_wrk
@pytest.mark.integration
def test_wrk_drives_the_trivial_endpoint_through_the_same_script(
    server: tuple[_Server, str],
) -> None:
    httpd, url = server
    trivial = wrkload.run(f"{url}/healthz", 1, 2)
    assert trivial["requests"] > 0 and trivial["errors"] == 0 and trivial["reused"] == 0
    assert httpd.seen == []
