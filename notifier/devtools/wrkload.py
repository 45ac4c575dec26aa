"""wrk drives the ingest pairs: light on the shared cores, so the ratio is the server's own."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from notifier.devtools.loadgen import BODY
from notifier.signature import TOLERANCE_SECONDS, signed_headers

# Two threads, each with half of the bench's connections (16 by default): light, as the
# ratio was measured before; wrk needs at least one connection per thread.
THREADS = 2
# NOTIFIER_WRK names the binary: a path, or "" to act as if wrk were not installed.
ENV = "NOTIFIER_WRK"
PREFIX = "wrk-json "

# wrk's Lua has no HMAC: the requests are signed in advance, a file for each thread (so a
# thread starts its run without reading the others' share): the body on line one, then one
# "id timestamp signature" a line, each sent once. Read from files: LuaJIT limits the
# constants of one table literal. Each request is put together in init(), where a thread's
# time is not measured, but the first thread runs while the next one reads: keep it quick.
# With no files (the trivial side) it sends one GET again and again, through the same calls.
SCRIPT = r"""
local threads = {}

function setup(thread)
  thread:set("slot", #threads)
  table.insert(threads, thread)
end

function init(args)
  queue, sent, unique = {}, 0, args[1] ~= ""
  if not unique then
    queue[1] = wrk.format()
    size = 1
    return
  end
  local before, after
  for line in io.lines(args[1] .. slot .. ".txt") do
    if before == nil then
      local headers = {["Content-Type"] = "application/json", ["X-Signed"] = "@"}
      before, after = wrk.format("POST", nil, headers, line):match("^(.*)X%-Signed: @(.*)$")
    else
      local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
      queue[#queue + 1] = before .. "webhook-id: " .. id .. "\r\nwebhook-timestamp: " .. ts
        .. "\r\nwebhook-signature: " .. sig .. after
    end
  end
  size = #queue
end

function request()
  sent = sent + 1
  return queue[(sent - 1) % #queue + 1]
end

function done(summary, latency, requests)
  local reused = 0
  for _, thread in ipairs(threads) do
    if thread:get("unique") then
      reused = reused + math.max(0, thread:get("sent") - thread:get("size"))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"reused": %d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, reused))
end
"""


def binary() -> str | None:
    """wrk's path, or None when it is not installed (or NOTIFIER_WRK="")."""
    name = os.environ.get(ENV, "wrk")
    return shutil.which(name) if name else None


def unavailable(seconds: float) -> str | None:
    """Why the wrk measure cannot run, or None when it can."""
    if binary() is None:
        return "wrk is not on PATH (apt-get install wrk)"
    if whole_seconds(seconds) > TOLERANCE_SECONDS - 30:
        return f"runs of {seconds:g} s outlast the signatures' {TOLERANCE_SECONDS} s tolerance"
    return None


def whole_seconds(seconds: float) -> int:
    """wrk's -d takes whole seconds: shorter runs take one."""
    return max(1, round(seconds))


def requests_needed(rate_bound: float, seconds: float) -> int:
    """Enough signed requests for a run that cannot go faster than `rate_bound` per second.

    The bound is the trivial endpoint's best rate so far: signing only slows the server.
    """
    return math.ceil(max(rate_bound, 1000.0) * whole_seconds(seconds) * 1.25) + 1000


def write_requests(path: Path, secret: str, count: int, now: float | None = None) -> None:
    """The body on line one, then `count` signed requests, each with its own webhook-id.

    A repeated webhook-id gets the cached answer, cheaper than a new message: each is unique.
    Timestamps are now: valid for the tolerance (5 minutes), well beyond a run.
    """
    lines = [BODY.decode()]
    for _ in range(count):
        headers = signed_headers(secret, f"msg_{uuid.uuid4().hex}", BODY, now)
        lines.append(" ".join(headers[name] for name in ("webhook-id", "webhook-timestamp",
                                                         "webhook-signature")))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def command(
    wrk: str, url: str, seconds: float, connections: int, script: Path, requests: str = ""
) -> list[str]:
    """The wrk command line; the script's arguments follow "--": the request files' prefix."""
    threads = min(THREADS, connections)
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{whole_seconds(seconds)}s",
            "--timeout", "10s", "-s", str(script), url, "--", requests]  # fmt: skip


def parse(output: str) -> dict[str, float]:
    """The result line the script's done() prints: requests, seconds, rate, errors, reused."""
    for line in output.splitlines():
        if line.startswith(PREFIX):
            raw = json.loads(line.removeprefix(PREFIX))
            seconds = raw["duration_us"] / 1e6
            return {
                "requests": raw["requests"],
                "seconds": seconds,
                "rate": raw["requests"] / seconds,
                "errors": raw["status_errors"] + raw["socket_errors"],
                "reused": raw["reused"],
            }
    raise ValueError(f"no result line in wrk's output:\n{output[-2000:]}")


def run(
    url: str, seconds: float, connections: int, secret: str | None = None, count: int = 0
) -> dict[str, float]:
    """Drive `url` with wrk; with a secret, `count` signed POSTs of unique webhook-ids."""
    wrk = binary()
    if wrk is None:
        raise FileNotFoundError("wrk")
    with tempfile.TemporaryDirectory(prefix="notifier-wrk-") as home:
        script = Path(home) / "ingest.lua"
        script.write_text(SCRIPT)
        prefix = ""
        if secret is not None:
            prefix = f"{home}/requests-"
            threads = min(THREADS, connections)
            for slot in range(threads):
                write_requests(Path(f"{prefix}{slot}.txt"), secret, -(-count // threads))
        args = command(wrk, url, seconds, connections, script, prefix)
        out = subprocess.run(
            args, capture_output=True, text=True, check=True, timeout=whole_seconds(seconds) + 60
        )
    return parse(out.stdout)
