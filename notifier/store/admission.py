"""Accepting work: idempotency key, status record and queued task, written in one atomic step.

One Lua script per request either finds the `webhook-id` already used (and says
for which message) or pushes the task and records the message together; the push
comes first, so a failing write leaves nothing behind. Nothing is
half-accepted: a 202 means all of it is in Redis; after a 503, a retry with the same
`webhook-id` finds whatever was stored, so nothing is queued twice. Work with a send_at
enters the schedule (notifier/store/schedule.py) in that same step instead of a queue.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from notifier.broker.queues import (
    CAMPAIGNS_QUEUE,
    MESSAGES_QUEUE,
    chunk_payloads,
    new_message_id,
    task_payload,
)
from notifier.errors import BrokerUnavailable, NotifierError
from notifier.store.keys import (
    PREFIX,
    campaign_key,
    digest_key,
    message_key,
    metrics_key,
    schedule_key,
)
from notifier.store.replies import text
from notifier.store.schedule import SCHEDULED, campaign_work, due_time, message_work
from notifier.store.scripts import source
from notifier.store.unfinished import (
    PUSH_LIMITS,
    chunk_envelope,
    chunk_member,
    message_envelope,
    queue_keys,
)


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
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._idempotency_ttl = idempotency_ttl
        self._retention = retention
        self._prefix = prefix
        self._counters = metrics_key(prefix, "counters")
        self._clock = clock
        self._pool = client.connection_pool
        self._held = threading.local()
        self._message = client.register_script(source("admit_message"))
        self._campaign = client.register_script(source("admit_campaign"))
        self._schedule = [schedule_key(prefix), schedule_key(prefix, "work")]

    def message(
        self, webhook_id: str, body: bytes, message: dict[str, Any], trace: str = ""
    ) -> Admitted:
        """Record and queue one validated message, unless `webhook_id` was seen before.

        `trace`, the request's trace id, is kept with the payload for the worker's log lines.

        Raises:
            IdempotencyConflict: the webhook-id was used with another body.
            BrokerUnavailable: Redis could not be reached, or its answer was lost.
        """
        message_id = new_message_id()
        now = round(self._clock(), 3)
        send_at, due = _when(message)
        status = SCHEDULED if send_at else "queued"
        entry = json.dumps({"status": status, "at": now}, separators=(",", ":"))
        # The task carries the id only (it names the task in Flower too); the payload
        # stays in the record, where the sender and the reconciler read it.
        # The trace rides in the payload as bookkeeping, like the id; neither goes to WeChat.
        fields = task_payload(message_id, message) | ({"trace": trace} if trace else {})
        payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        # A scheduled envelope is dated its due time: the mover pushes it then.
        envelope = message_envelope(message_id, due or now)
        work = message_work(message_id, envelope, self._prefix) if send_at else ""
        keys = [self._idem_key(webhook_id), message_key(self._prefix, message_id),
                message_key(self._prefix, message_id, "history"),
                *queue_keys(MESSAGES_QUEUE), self._counters, *self._schedule]  # fmt: skip
        args = [_digest(body), message_id, now, entry, envelope, self._idempotency_ttl,
                self._kept(now, due), *PUSH_LIMITS, payload, due or "", work,
                send_at]  # fmt: skip
        return self._run(self._message, keys, args, message_id)

    def campaign(
        self, webhook_id: str, body: bytes, campaign: dict[str, Any], trace: str = ""
    ) -> Admitted:
        """Record a campaign and queue all of its chunks, unless `webhook_id` was seen before.

        `trace`, the request's trace id, is kept once in the campaign's record, not per chunk.

        Raises:
            IdempotencyConflict: the webhook-id was used with another body.
            BrokerUnavailable: Redis could not be reached, or its answer was lost.
        """
        campaign_id = new_message_id()
        now = round(self._clock(), 3)
        send_at, due = _when(campaign)
        chunks = chunk_payloads(campaign_id, campaign)
        per_chunk: list[str] = []
        tasks: list[tuple[str, str]] = []  # a scheduled campaign's, pushed by the mover
        for number, chunk in enumerate(chunks):
            member = chunk_member(campaign_id, number)
            envelope = chunk_envelope(campaign_id, number, due or now)
            if send_at:
                tasks.append((member, envelope))
            per_chunk += ["" if send_at else envelope, member,
                          json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)]  # fmt: skip
        work = campaign_work(campaign_id, tasks, self._prefix) if send_at else ""
        keys = [self._idem_key(webhook_id), campaign_key(self._prefix, campaign_id),
                *queue_keys(CAMPAIGNS_QUEUE),
                campaign_key(self._prefix, campaign_id, "chunks"), self._counters,
                *self._schedule]  # fmt: skip
        args = [_digest(body), campaign_id, now, campaign["template_id"],
                len(campaign["recipients"]), len(chunks), self._idempotency_ttl,
                self._kept(now, due), *PUSH_LIMITS, trace, due or "", work, send_at,
                *per_chunk]  # fmt: skip
        return self._run(self._campaign, keys, args, campaign_id)

    def _kept(self, now: float, due: float | None) -> int:
        """How long records live: the retention, from the send_at when there is one."""
        return self._retention + (max(0, math.ceil(due - now)) if due else 0)

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
        """This thread's (or greenlet's) own connection, held between requests.

        A connection checked out of the pool per command is first probed for stray
        data: three more system calls on every request, for a check a held
        connection does not need. Under gunicorn's gevent workers each client connection
        is one greenlet, so its requests share one Redis connection, which goes back to
        the pool when the client connection ends.
        """
        held: redis.Redis | None = getattr(self._held, "client", None)
        if held is None:
            held = self._held.client = redis.Redis(
                connection_pool=self._pool, single_connection_client=True
            )
        return held

    def _idem_key(self, webhook_id: str) -> str:
        digest = hashlib.sha256(webhook_id.encode()).hexdigest()[:32]
        return digest_key(self._prefix, "idempotency", digest)


def _when(work: dict[str, Any]) -> tuple[str, float | None]:
    """A send_at as signed (validated by the web's schema) and its due time; ('', None)
    for work to queue now. The signed text stays in the payload as received."""
    send_at = work.get("send_at") or ""
    return send_at, (due_time(send_at) if send_at else None)


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
