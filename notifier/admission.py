"""Accepting work: idempotency key, status record and queued task, written in one atomic step.

One Lua script per request either finds the `webhook-id` already used (and says
for which message) or pushes the task and records the message together; the push
comes first, so a failing write leaves nothing behind. Nothing is
half-accepted: a 202 means all of it is in Redis; after a 503, a retry with the same
`webhook-id` finds whatever was stored, so nothing is queued twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from notifier.broker import WAKE_TOKENS_MAX, WAKE_TOKENS_TTL, task_message, wake_key
from notifier.errors import BrokerUnavailable, NotifierError
from notifier.queue import (
    CAMPAIGNS_QUEUE,
    CHUNK_TASK,
    MESSAGES_QUEUE,
    SEND_TASK,
    chunk_payloads,
    new_message_id,
    task_payload,
)
from notifier.replies import text

_MESSAGE = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('LPUSH', KEYS[4], ARGV[5])
redis.call('LPUSH', KEYS[5], 1)
redis.call('LTRIM', KEYS[5], 0, ARGV[8] - 1)
redis.call('EXPIRE', KEYS[5], ARGV[9])
redis.call('HSET', KEYS[2], 'status', 'queued', 'updated', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[6])
return false
"""

_BATCH = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
for i = 11, #ARGV do
  redis.call('LPUSH', KEYS[3], ARGV[i])
  redis.call('LPUSH', KEYS[4], 1)
end
redis.call('LTRIM', KEYS[4], 0, ARGV[9] - 1)
redis.call('EXPIRE', KEYS[4], ARGV[10])
redis.call('HSET', KEYS[2], 'state', 'queued', 'template_id', ARGV[4], 'count', ARGV[5],
           'chunks', ARGV[6], 'created', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[7])
return false
"""


class IdempotencyConflict(NotifierError):
    """Raised when a `webhook-id` comes back with a different body."""


@dataclass(frozen=True)
class Admitted:
    """What the intake answers: the id, and whether this was a repeat of an earlier request."""

    id: str
    repeated: bool


class Admission:
    """Admits single messages and campaigns into Redis, each in one atomic script."""

    def __init__(
        self,
        client: redis.Redis,
        idempotency_ttl: int,
        retention: int,
        prefix: str = "notifier",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._idempotency_ttl = idempotency_ttl
        self._retention = retention
        self._prefix = prefix
        self._clock = clock
        self._pool = client.connection_pool
        self._held = threading.local()
        self._message = client.register_script(_MESSAGE)
        self._batch = client.register_script(_BATCH)

    def message(self, webhook_id: str, body: bytes, message: dict[str, Any]) -> Admitted:
        """Record and queue one validated message, unless `webhook_id` was seen before.

        Raises:
            IdempotencyConflict: the webhook-id was used with another body.
            BrokerUnavailable: Redis could not be reached, or its answer was lost.
        """
        message_id = new_message_id()
        now = round(self._clock(), 3)
        entry = json.dumps({"status": "queued", "at": now}, separators=(",", ":"))
        # The message id names the task too, so Flower shows the id the status API knows.
        payload = [task_payload(message_id, message)]
        envelope = task_message(SEND_TASK, payload, MESSAGES_QUEUE, task_id=message_id)
        key = f"{self._prefix}:msg:{message_id}"
        keys = [self._idem_key(webhook_id), key, f"{key}:history", MESSAGES_QUEUE,
                wake_key(MESSAGES_QUEUE)]  # fmt: skip
        args = [_digest(body), message_id, now, entry, envelope, self._idempotency_ttl,
                self._retention, WAKE_TOKENS_MAX, WAKE_TOKENS_TTL]  # fmt: skip
        return self._run(self._message, keys, args, message_id)

    def batch(self, webhook_id: str, body: bytes, batch: dict[str, Any]) -> Admitted:
        """Record a campaign and queue all of its chunks, unless `webhook_id` was seen before.

        Raises:
            IdempotencyConflict: the webhook-id was used with another body.
            BrokerUnavailable: Redis could not be reached, or its answer was lost.
        """
        batch_id = new_message_id()
        chunks = chunk_payloads(batch_id, batch)
        envelopes = [task_message(CHUNK_TASK, [chunk], CAMPAIGNS_QUEUE) for chunk in chunks]
        keys = [self._idem_key(webhook_id), f"{self._prefix}:batch:{batch_id}", CAMPAIGNS_QUEUE,
                wake_key(CAMPAIGNS_QUEUE)]  # fmt: skip
        args = [_digest(body), batch_id, round(self._clock(), 3), batch["template_id"],
                len(batch["recipients"]), len(chunks), self._idempotency_ttl, self._retention,
                WAKE_TOKENS_MAX, WAKE_TOKENS_TTL, *envelopes]  # fmt: skip
        return self._run(self._batch, keys, args, batch_id)

    def _run(self, script: Any, keys: list[str], args: list[Any], new_id: str) -> Admitted:
        try:
            try:
                existing = script(keys=keys, args=args, client=self._connection())
            except redis.ConnectionError:
                # A held connection learns of a Redis restart on its next use, and is then
                # reopened. Running the script again is safe: a copy that did run before the
                # connection broke is found by its idempotency key, not admitted twice.
                existing = script(keys=keys, args=args, client=self._connection())
        except redis.RedisError as exc:
            raise BrokerUnavailable("the message broker is unavailable") from exc
        if not existing:
            return Admitted(new_id, repeated=False)
        digest, _, earlier_id = text(existing).partition("|")
        if digest != args[0]:
            raise IdempotencyConflict("this webhook-id was already used with a different body")
        return Admitted(earlier_id, repeated=True)

    def _connection(self) -> redis.Redis:
        """This thread's own connection, held between requests.

        A connection checked out of the pool per command is first probed for stray
        data: three more system calls on every request, for a check a held
        connection does not need. This assumes long-lived threads, as gunicorn's gthread
        workers have; under greenlets it would open a client per request.
        """
        held: redis.Redis | None = getattr(self._held, "client", None)
        if held is None:
            held = self._held.client = redis.Redis(
                connection_pool=self._pool, single_connection_client=True
            )
        return held

    def _idem_key(self, webhook_id: str) -> str:
        return f"{self._prefix}:idem:{hashlib.sha256(webhook_id.encode()).hexdigest()[:32]}"


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
