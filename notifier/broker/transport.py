"""The broker transport: kombu's Redis transport, with fewer round trips and no lost wake-up.

kombu takes one message per BRPOP, then records it as unacknowledged in a second
round trip (MULTI: ZADD + HSET) and acknowledges it in a third (MULTI: ZREM +
HDEL). A worker killed between the BRPOP and the MULTI loses that message. Here an
idle worker waits for a wake-up token (BLPOP on the queue's wake list, which every
publish also pushes to), which leaves the message in its queue and wakes one worker,
not all; then, as under a backlog, one script takes a run of messages and records
each as unacknowledged in the same atomic step. An ack is one script call.
The keys, their contents and the recovery of unacknowledged messages are kombu's
own, so workers on either transport can share a broker, and BROKER_TRANSPORT=kombu
switches to kombu's stock transport with the queues as they are.

It overrides and calls names that are not kombu's public API: they are listed in
notifier/broker/plugin.py, and checked when this module is imported.
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
from kombu.utils.json import dumps, loads

from notifier.broker.lua import ACK, PARK, PULL, PULL_SHA
from notifier.broker.plugin import require
from notifier.broker.wake import WAKE_TOKENS_MAX, WAKE_TOKENS_TTL, wake_key

# Imported at the process's first broker connection: a kombu this was not written for
# stops the process here, with one line, before anything is consumed.
require()

log = logging.getLogger(__name__)

# Messages taken per round trip at most, within the prefetch room the worker has.
PULL_MOST = 32


class QoS(kombu_redis.QoS):
    """Skips the bookkeeping round trip for messages the pull script recorded already."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.channel._recorded:
            self.channel._recorded.discard(delivery_tag)  # the consumer will ack it
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

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            super().restore_visible(start=start, num=num, interval=interval)
        except redis.ResponseError as exc:
            # Out of memory, its lock cannot be written: the next sweep tries again.
            log.warning("the sweep for unacknowledged messages was refused: %s", exc)

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        try:
            super().restore_by_tag(tag, client=client, leftmost=leftmost)
        except (ValueError, TypeError):
            # kombu cannot read the record back, and would stop every sweep here.
            self.channel.park(tag)


class Channel(kombu_redis.Channel):
    """Reuses one Redis client per pool, and pulls runs of messages under a backlog.

    kombu builds a new client (a dictionary of some two hundred response callbacks)
    for each ack and each delivery: about 15% of a worker's CPU in a profile of a
    single-message drain. A client holds no connection of its own, only the pool, so
    one per pool is safe across threads; a new pool (after a reconnect) gets a new one.

    An idle queue is waited on with BLPOP on its wake list (or kombu's BRPOP, for a
    worker of several queues); once woken, the pull script takes the message and any
    behind it. A message pushed without a token (kombu's own restore of unacknowledged
    messages, or a publisher on kombu's stock transport) is found by the pull that
    follows every wait that timed out, within `brpop_timeout` (1 s).
    """

    QoS = QoS
    _shared_client: redis.Redis | None = None
    _ack: Any = None
    _park: Any = None
    _backlog = False
    # Whether the last pull stopped at a message only kombu's BRPOP path can read.
    _foreign = False
    # What the reply in flight answers: "BRPOP" (kombu's), "PULL" or "WAIT" (for a
    # wake-up token), and the command sent for it.
    _reading = "BRPOP"
    _command = "BRPOP"
    # Whether Redis has the pull script cached, after this channel's first pull with EVAL.
    _pull_cached = False
    # Until when reads wait after Redis refused one (out of memory): BRPOP would take
    # messages that kombu could then not record.
    _paused_until = 0.0
    # When Redis last refused an acknowledgement's write.
    _ack_refused_at = -10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Delivery tags the pull script recorded as unacknowledged, until kombu appends them.
        self._recorded: set[str] = set()

    @property
    def unreadable_key(self) -> str:
        """The list of messages that could not be delivered (see lua/park.lua)."""
        return f"{self.unacked_key}_unreadable"

    def forget(self, delivery_tag: str) -> None:
        """Drop an acknowledged message from the unacked set, in one round trip.

        A write Redis refuses (read-only after a failover, out of disk) leaves the record:
        the message comes back after the visibility timeout, and its task finds it final.
        Raising instead would stop the worker.
        """
        self._create_client()
        try:
            self._ack(keys=[self.unacked_key, self.unacked_index_key], args=[delivery_tag])
        except redis.ResponseError as exc:
            if time.monotonic() >= self._ack_refused_at + 5:  # one line per episode
                log.warning("Redis refused an acknowledgement (%s); the record stays", exc)
            self._ack_refused_at = time.monotonic()

    def park(self, delivery_tag: Any) -> None:
        """Move a message that cannot be delivered out of the unacked set, and say so."""
        self._create_client()
        keys = [self.unacked_key, self.unacked_index_key, self.unreadable_key]
        if self._park(keys=keys, args=[delivery_tag]):
            log.error("message %s cannot be read; moved to the Redis list %s",
                      bytes_to_str(delivery_tag), self.unreadable_key)  # fmt: skip

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = super()._create_client()
            # Scripts first: another thread may use the client once it is published.
            self._ack, self._park = client.register_script(ACK), client.register_script(PARK)
            self._shared_client = client
        return client

    def _brpop_start(self, timeout: int | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        if time.monotonic() < self._paused_until:
            return  # nothing in flight: the loop polls again, and this is asked again
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._reading = self._next_read(keys)
        if self._reading == "BRPOP":
            super()._brpop_start(timeout)
            return
        if self._reading == "PULL":
            room = self.qos.can_consume_max_estimate()
            room = PULL_MOST if room is None else max(1, room)
            script = ["EVALSHA", PULL_SHA] if self._pull_cached else ["EVAL", PULL]
            wakes = [wake_key(key) for key in keys]
            command = [*script, 2 + 2 * len(keys), self.unacked_key, self.unacked_index_key,
                       *keys, *wakes, min(room, PULL_MOST), time.time(), len(keys)]  # fmt: skip
        else:
            # Wait for a wake-up token; the message stays in its queue until pulled. Never
            # for ever (0): a wait that times out pulls, for messages pushed without a token.
            wait = self.brpop_timeout if timeout is None else timeout
            command = ["BLPOP", wake_key(keys[0]), wait or 1]
        self._command = command[0]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        self.client.connection.send_command(*command)

    def _next_read(self, keys: list[str]) -> str:
        if self.global_keyprefix or self._foreign:
            return "BRPOP"
        if self._backlog:
            return "PULL"
        # A worker of several queues waits with kombu's BRPOP, as kombu would.
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
                reply = self.client.parse_response(self.client.connection, self._command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except redis.ResponseError as exc:
                self._refused(reading, exc)
                raise Empty() from None
            if reading == "WAIT":
                # Woken, or timed out: pull either way, for messages pushed without a token.
                self._backlog = True
                raise Empty()
            self._pull_cached = True
            return self._deliver_pulled(reply)
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _refused(self, reading: str, exc: redis.ResponseError) -> None:
        """Redis refused the pull or the wait; neither took anything (see lua/pull.lua)."""
        if isinstance(exc, redis.exceptions.NoScriptError):
            # Restarted, failed over or flushed: the script did not run. Send its text.
            self._pull_cached = False
            return
        self._backlog = False
        if time.monotonic() >= self._paused_until + 5:  # one line per episode, not per second
            log.warning("Redis refused %s (%s); nothing taken, trying every second", reading, exc)
        self._paused_until = time.monotonic() + 1

    def _deliver_pulled(self, reply: list[Any]) -> bool:
        foreign, items = reply[0], reply[1:]
        # Stopped at a message only kombu's own path can read: BRPOP takes it next.
        self._foreign = bool(foreign)
        self._backlog = bool(items)
        for key, raw_tag, item in zip(items[::3], items[1::3], items[2::3], strict=True):
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            tag = bytes_to_str(raw_tag)
            self._recorded.add(tag)  # for QoS.append, during this delivery only
            try:
                self.connection._deliver(loads(bytes_to_str(item)), dest)
            except Exception:
                # Recorded but not deliverable: it would come back after every visibility
                # timeout. The rest of the run is delivered all the same.
                log.exception("delivering a message from %s failed", dest)
                self.park(tag)
            else:
                if tag in self._recorded:
                    # Not appended: its consumer does not ack (Celery's replies to inspect
                    # and control). Nothing else would forget it; the sweep would resend it.
                    self.forget(tag)
            finally:
                self._recorded.discard(tag)
        if not items:
            raise Empty()
        return True

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """Publish as kombu does, with a wake-up token for one idle worker in the same step.

        One transaction: a message is never queued by a publish that then fails (its
        retry would queue it twice), nor announced by a token without being queued.
        """
        batch = kwargs.get("_publish_batch")
        if self.global_keyprefix:
            super()._put(queue, message, **kwargs)  # its workers wait with BRPOP (_next_read)
            return
        wake = wake_key(queue)
        token = [("lpush", (wake, 1)), ("ltrim", (wake, 0, WAKE_TOKENS_MAX - 1)),
                 ("expire", (wake, WAKE_TOKENS_TTL))]  # fmt: skip
        if batch is not None:  # kombu's publish batch: one pipeline, sent when it fills
            super()._put(queue, message, **kwargs)
            for name, args in token:
                batch.add(name, *args)
            return
        pri = self._get_message_priority(message, reverse=False)
        with self.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.lpush(self._q_for_pri(queue, pri), dumps(message))
            if self._expires and queue in self._expires:
                for step in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, step), self._expires[queue])
            for name, args in token:
                getattr(pipe, name)(*args)
            pipe.execute()


class Transport(kombu_redis.Transport):
    """Registered under kombu's `redis` and `rediss` (BROKER_TRANSPORT=fast; see
    notifier/broker/plugin.py), so the broker URL stays `redis://`."""

    Channel = Channel
