"""Switching BROKER_TRANSPORT either way keeps the queued tasks: each transport reads the other's.

Each side is its own process, configured only by BROKER_TRANSPORT, as after a deploy
that changes it: tasks published through the Celery app on one transport are taken,
through the worker's own path (a consumer polled by drain_events), on the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.broker.wake import wake_key
from notifier.devtools.redis_server import RedisServer

ROOT = Path(__file__).parents[2]

PUBLISH = """
import json, sys
from notifier.broker.app import app
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK, MESSAGES_QUEUE, SEND_TASK
count = int(sys.argv[1])
with app.producer_or_acquire() as producer:
    for n in range(count):
        app.send_task(SEND_TASK, args=({"id": f"m{n}"},), queue=MESSAGES_QUEUE)
        app.send_task(CHUNK_TASK, args=({"batch": f"b{n}"},), queue=CAMPAIGNS_QUEUE,
                      producer=producer)
with app.connection_for_write() as connection:
    print(json.dumps({"transport": type(connection.transport).__module__,
                      "uri": connection.as_uri()}))
"""

# Takes `want` tasks from each queue; with `hold`, takes them without acknowledging and
# closes, as a worker stopped while holding prefetched tasks does (they go back).
CONSUME = """
import json, socket, sys, time
from kombu import Consumer, Queue
from notifier.broker.app import app
from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
want, hold = int(sys.argv[1]), sys.argv[2] == "hold"
taken = {}
for name in (MESSAGES_QUEUE, CAMPAIGNS_QUEUE):
    # A connection per queue: held tasks fill a channel's prefetch until it closes.
    with app.connection_for_read() as connection:
        got = taken[name] = []
        def receive(body, message):
            args = body[0][0]
            got.append(args.get("id") or args["batch"])
            if not hold:
                message.ack()
        with Consumer(connection, [Queue(name)], callbacks=[receive], prefetch_count=want):
            deadline = time.monotonic() + 20
            while len(got) < want and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=1)
                except socket.timeout:
                    pass
print(json.dumps({"transport": type(connection.transport).__module__, "taken": taken}))
"""


def _run(code: str, transport: str, url: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "REDIS_URL": url, "BROKER_TRANSPORT": transport}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


MODULES = {"fast": "notifier.broker.transport", "kombu": "kombu.transport.redis"}


@pytest.mark.parametrize(("before", "after"), [("fast", "kombu"), ("kombu", "fast")])
def test_tasks_queued_on_one_transport_are_taken_on_the_other(
    redis_server: RedisServer, redis_client: redis.Redis, before: str, after: str
) -> None:
    published = _run(PUBLISH, before, redis_server.url, "5")
    assert published["transport"] == MODULES[before]
    assert published["uri"].startswith("redis://")
    # Only notifier's transport leaves wake-up tokens beside a queue.
    assert bool(redis_client.exists(wake_key(MESSAGES_QUEUE))) == (before == "fast")
    assert redis_client.llen(MESSAGES_QUEUE) == redis_client.llen(CAMPAIGNS_QUEUE) == 5

    # A worker on the old transport stops holding two of each; they go back to their queue.
    held = _run(CONSUME, before, redis_server.url, "2", "hold")
    assert {len(ids) for ids in held["taken"].values()} == {2}
    assert redis_client.hlen("unacked") == 0

    taken = _run(CONSUME, after, redis_server.url, "5", "ack")
    assert taken["transport"] == MODULES[after]
    assert sorted(taken["taken"][MESSAGES_QUEUE]) == [f"m{n}" for n in range(5)]
    assert sorted(taken["taken"][CAMPAIGNS_QUEUE]) == [f"b{n}" for n in range(5)]
    assert redis_client.llen(MESSAGES_QUEUE) == redis_client.llen(CAMPAIGNS_QUEUE) == 0
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
