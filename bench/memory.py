"""Redis memory per message through its lifecycle, measured on a private redis-server.

Run: python bench/memory.py [count]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import redis

from notifier.idempotency import IdempotencyKeys
from notifier.queue import new_message_id, task_payload
from notifier.redis_server import RedisServer
from notifier.state import MessageState

MESSAGE = {
    "touser": "oDevFollower000000000000001",
    "template_id": "TPL_ORDER_SHIPPED_0000000000000000000000",
    "data": {"thing1": {"value": "Shipped"}, "character_string2": {"value": "SF1234567890"}},
}


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        server = RedisServer(Path(home), appendonly=False).start()
        try:
            client = redis.Redis.from_url(server.url)
            state = MessageState(client)
            idem = IdempotencyKeys(client, ttl=86400)
            ids = [new_message_id() for _ in range(count)]
            base = used(client)
            for message_id in ids:
                idem.reserve(f"msg_{message_id}", b"x" * 200, message_id)
            after_idem = used(client)
            for message_id in ids:
                state.record_queued(message_id)
            after_queued = used(client)
            for i, message_id in enumerate(ids):
                state.record_sent(message_id, 200_000_000 + i)
            after_sent = used(client)
            broker_bytes = len(json.dumps(task_payload(ids[0], MESSAGE)))
            print(f"messages                         {count}")
            print(f"idempotency key, per message     {(after_idem - base) / count:.0f} B")
            print(f"status record when queued        {(after_queued - after_idem) / count:.0f} B")
            print(f"status record once sent          {(after_sent - after_idem) / count:.0f} B")
            print(f"task payload (JSON, before envelope) {broker_bytes} B")
        finally:
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
