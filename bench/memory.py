"""Redis memory per single message through its lifecycle, measured on a private redis-server.

Run: python bench/memory.py [count]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import redis

from notifier.broker.queues import MESSAGES_QUEUE
from notifier.devtools.measures import stored_bytes
from notifier.devtools.redis_server import RedisServer
from notifier.store.admission import Admission
from notifier.store.keys import PREFIX, digest_key, message_key, msgid_key, unfinished_key
from notifier.store.messages import MessageState

MESSAGE = {
    "touser": "oDevFollower000000000000001",
    "template_id": "TPL_ORDER_SHIPPED_0000000000000000000000",
    "data": {"thing1": {"value": "Shipped"}, "character_string2": {"value": "SF1234567890"}},
}


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        server = RedisServer(Path(home), appendonly=False).start()
        try:
            client = redis.Redis.from_url(server.url)
            admission = Admission(client, idempotency_ttl=86400, retention=7 * 86400)
            state = MessageState(client)
            ids = [admission.message(f"msg_{i}", b"%d" % i, MESSAGE).id for i in range(count)]
            admitted = stored_bytes(client)
            tracked = (client.memory_usage(unfinished_key(MESSAGES_QUEUE)) or 0) / count
            client.delete(MESSAGES_QUEUE)  # as if a worker had taken every task
            envelope = (admitted - stored_bytes(client)) / count
            sample = ids[:: max(1, count // 500)]

            def per_message() -> float:
                keys = [message_key(PREFIX, i) for i in sample]
                keys += [message_key(PREFIX, i, "history") for i in sample]
                return sum(client.memory_usage(k) or 0 for k in keys) / len(sample)

            queued = per_message()
            idem_keys = client.scan_iter(digest_key(PREFIX, "idempotency", "*"))
            idem = sum(client.memory_usage(k) or 0 for k in idem_keys)
            for i, message_id in enumerate(ids):
                state.record_sent(message_id, 200_000_000 + i)
            sent = per_message()
            msgid = sum(client.memory_usage(msgid_key(PREFIX, 200_000_000 + i)) or 0
                        for i in range(0, count, max(1, count // 500))) / len(sample)  # fmt: skip
            print(f"messages: {count} (Redis {client.info('server')['redis_version']})")
            print(f"task envelope in the queue, while queued      {envelope:.0f} B")
            print(f"status record (with payload) and history, while queued  {queued:.0f} B")
            print(f"unfinished-set entry, until final             {tracked:.0f} B")
            print(f"status record and history, once sent          {sent:.0f} B")
            print(f"msgid -> id key for receipts, once sent       {msgid:.0f} B")
            print(f"idempotency key (kept IDEMPOTENCY_TTL_HOURS)  {idem / count:.0f} B")
        finally:
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
