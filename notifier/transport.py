"""The broker transport: kombu's Redis transport, with fewer round trips and no lost wake-up.

kombu takes one message per BRPOP, then records it as unacknowledged in a second
round trip (MULTI: ZADD + HSET) and acknowledges it in a third (MULTI: ZREM +
HDEL). A worker killed between the BRPOP and the MULTI loses that message. Here an
idle worker waits with BLMOVE from the queue's tail to its tail, which leaves the
message in place; then, as under a backlog, one script takes a run of messages and
records each as unacknowledged in the same atomic step. An ack is one script call.
The keys, their contents and the recovery of unacknowledged messages are kombu's
own, so workers on either transport can share a broker.
"""

from __future__ import annotations

import logging
import time
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger(__name__)

# Takes up to ARGV[1] messages, highest priority first (the order BRPOP uses), and
# records each as unacknowledged exactly as kombu does, in the same atomic step. Each
# is recorded before it is popped, so a write Redis refuses (out of memory) leaves it
# in its queue: a message is never out of its queue without being in the unacked set.
# It stops at a message it cannot read, leaving it for kombu's own path.
# Returns {stopped at such a message (0 or 1), key, message, key, message, ...}.
PULL = """
local most, now = tonumber(ARGV[1]), ARGV[2]
local out = {0}
for i = 3, #KEYS do
  while #out <= 2 * most do
    local item = redis.call('LINDEX', KEYS[i], -1)
    if not item then break end
    local ok, m = pcall(cjson.decode, item)
    local p = ok and type(m) == 'table' and m['properties']
    local tag = type(p) == 'table' and p['delivery_tag']
    local info = type(p) == 'table' and p['delivery_info']
    if type(tag) ~= 'string' or type(info) ~= 'table' or type(info['exchange']) ~= 'string'
        or type(info['routing_key']) ~= 'string' then
      out[1] = 1
      return out
    end
    redis.call('ZADD', KEYS[2], now, tag)
    redis.call('HSET', KEYS[1], tag, '[' .. item .. ',' .. cjson.encode(info['exchange'])
      .. ',' .. cjson.encode(info['routing_key']) .. ']')
    redis.call('RPOP', KEYS[i])
    out[#out + 1] = KEYS[i]
    out[#out + 1] = item
  end
end
return out
"""

# Forgets an acknowledged message: kombu's ZREM + HDEL, in one call.
ACK = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# Messages taken per round trip at most, within the prefetch room the worker has.
PULL_MOST = 32


class QoS(kombu_redis.QoS):
    """Skips the bookkeeping round trip for messages the pull script recorded already."""

    def append(self, message: Any, delivery_tag: str) -> None:
        recorded = self.channel._recorded
        if delivery_tag in recorded:
            recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self.channel.forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            super().reject(delivery_tag, requeue=True)
        else:
            self.ack(delivery_tag)


class Channel(kombu_redis.Channel):
    """Reuses one Redis client per pool, and pulls runs of messages under a backlog.

    kombu builds a new client (a dictionary of some two hundred response callbacks)
    for each ack and each delivery: about 15% of a worker's CPU in a profile of a
    single-message drain. A client holds no connection of its own, only the pool, so
    one per pool is safe across threads; a new pool (after a reconnect) gets a new one.

    An idle queue is waited on with BLMOVE (or kombu's BRPOP, for a worker of several
    queues); once a message is there, the pull script takes it and any behind it.
    """

    QoS = QoS
    _shared_client: redis.Redis | None = None
    _ack: Any = None
    _backlog = False
    # Whether the last pull stopped at a message only kombu's BRPOP path can read.
    _foreign = False
    # What the reply in flight answers: "BRPOP" (kombu's), "PULL" or "WAIT".
    _reading = "BRPOP"
    # Until when pulling is off after Redis refused the script (e.g. out of memory).
    _refused_until = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Delivery tags the pull script recorded as unacknowledged, until kombu appends them.
        self._recorded: set[str] = set()

    def forget(self, delivery_tag: str) -> None:
        """Drop an acknowledged message from the unacked set, in one round trip."""
        self._create_client()
        self._ack(keys=[self.unacked_key, self.unacked_index_key], args=[delivery_tag])

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
            self._ack = client.register_script(ACK)
        return client

    def _brpop_start(self, timeout: int | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._reading = self._next_read(keys)
        if self._reading == "BRPOP":
            super()._brpop_start(timeout)
            return
        if self._reading == "PULL":
            room = self.qos.can_consume_max_estimate() or PULL_MOST
            command = ["EVAL", PULL, 2 + len(keys), self.unacked_key, self.unacked_index_key,
                       *keys, min(room, PULL_MOST), time.time()]  # fmt: skip
        else:
            # Wait for a message without taking it: it moves from the tail to the tail.
            wait = self.brpop_timeout if timeout is None else timeout
            command = ["BLMOVE", keys[0], keys[0], "RIGHT", "RIGHT", wait or 0]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        self.client.connection.send_command(*command)

    def _next_read(self, keys: list[str]) -> str:
        if self.global_keyprefix or self._foreign or time.monotonic() < self._refused_until:
            return "BRPOP"
        if self._backlog:
            return "PULL"
        # BLMOVE watches one list: a worker of several queues waits with kombu's BRPOP.
        return "WAIT" if len(keys) == 1 else "BRPOP"

    def _brpop_read(self, **options: Any) -> bool:
        reading, self._reading = self._reading, "BRPOP"
        if reading == "BRPOP":
            self._foreign = False
            got: bool = super()._brpop_read(**options)
            self._backlog = got  # a message now: more may be waiting
            return got
        try:
            try:
                command = "EVAL" if reading == "PULL" else "BLMOVE"
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except redis.ResponseError as exc:
                # Refused before it took anything (see PULL): use kombu's BRPOP a while.
                log.warning("%s refused (%s); waiting with BRPOP for 60 s", reading, exc)
                self._backlog, self._refused_until = False, time.monotonic() + 60
                raise Empty() from None
            if reading == "WAIT":
                self._backlog = reply is not None  # woken: the next read pulls
                raise Empty()
            return self._deliver_pulled(reply)
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _deliver_pulled(self, reply: list[Any]) -> bool:
        foreign, items = reply[0], reply[1:]
        # Stopped at a message only kombu's own path can read: BRPOP takes it next.
        self._foreign = bool(foreign)
        self._backlog = bool(items)
        for key, item in zip(items[::2], items[1::2], strict=True):
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = loads(bytes_to_str(item))
            self._recorded.add(message["properties"]["delivery_tag"])
            self.connection._deliver(message, dest)
        if not items:
            raise Empty()
        return True


class Transport(kombu_redis.Transport):
    """Selected by `broker_transport` in celeryconfig; the broker URL stays `redis://`."""

    Channel = Channel
