"""The broker transport reuses one Redis client per pool and still delivers and acks."""

from __future__ import annotations

from kombu import Connection

from notifier.redis_server import RedisServer
from notifier.transport import Transport


def test_one_client_per_pool_and_a_new_one_after_a_reconnect(redis_server: RedisServer) -> None:
    with Connection(redis_server.url, transport=Transport) as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        channel._pool = None  # what kombu does when it drops its connections
        again = channel._create_client()
        assert again is not first and again.connection_pool is channel.pool


def test_messages_are_delivered_and_acknowledged(redis_server: RedisServer) -> None:
    with Connection(redis_server.url, transport=Transport) as connection:
        queue = connection.SimpleQueue("notifier.test-transport")
        for n in range(3):
            queue.put({"n": n})
        seen = []
        for _ in range(3):
            message = queue.get(timeout=5)
            seen.append(message.payload["n"])
            message.ack()
        channel = queue.channel
        client = channel._create_client()
        assert sorted(seen) == [0, 1, 2]
        assert client.hlen(channel.unacked_key) == 0  # every ack reached Redis
        queue.close()
