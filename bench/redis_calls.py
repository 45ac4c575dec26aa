"""CPU per Redis call of the installed redis-py, on a private redis-server: the pin's reason.

redis-py is pinned below 7.2 because later releases spend more CPU on each command.
Run this under each version to see whether that still holds before lifting the pin.

Run: python bench/redis_calls.py [calls]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from notifier.devtools.redis_server import RedisServer


def cpu_us(call: Callable[[], object], calls: int) -> float:
    """Client CPU per call, in microseconds (the server's time is not counted)."""
    started = time.process_time()
    for _ in range(calls):
        call()
    return round((time.process_time() - started) / calls * 1e6, 1)


def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        server = RedisServer(Path(home), appendonly=False).start()
        try:
            client = redis.Redis.from_url(server.url)
            script = client.register_script("return redis.call('GET', KEYS[1])")

            def pipeline() -> object:
                return client.pipeline().zadd("z", {"a": 1}).hset("h", "a", "b").execute()

            report = {
                "redis_py": redis.__version__,
                "get_us": cpu_us(lambda: client.get("k"), calls),
                "evalsha_us": cpu_us(lambda: script(keys=["k"], args=[1, 2, 3]), calls),
                "pipeline_of_two_us": cpu_us(pipeline, calls),
            }
            print(json.dumps(report))
        finally:
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
