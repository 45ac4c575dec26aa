"""Each message's status and history in Redis: what operators see, and what stops double sends."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

QUEUED = "queued"
RETRYING = "retrying"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
DEAD = "dead"
DEFERRED = "deferred"

# A message in one of these states is never sent again unless an operator replays it.
FINAL = frozenset({SENT, DELIVERED, FAILED, DEAD})

DEFAULT_RETENTION = 7 * 24 * 3600


@dataclass
class MessageRecord:
    """A message's status as stored, for the status API and the CLI."""

    id: str
    status: str
    attempts: int = 0
    msgid: int | None = None
    errcode: int | None = None
    errmsg: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class MessageState:
    """Reads and writes message records; every transition is one atomic pipeline."""

    def __init__(
        self,
        client: redis.Redis,
        retention: int = DEFAULT_RETENTION,
        prefix: str = "notifier",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._retention = retention
        self._prefix = prefix
        self._clock = clock

    def record_queued(self, message_id: str) -> None:
        """Create the record as the intake accepts a message."""
        self._transition(message_id, QUEUED, {})

    def discard(self, message_id: str) -> None:
        """Forget a record whose message never reached the broker."""
        self._redis.delete(self._key(message_id), self._history_key(message_id))

    def status(self, message_id: str) -> str | None:
        """Return the current status, or None for an unknown id."""
        value = self._redis.hget(self._key(message_id), "status")
        return value.decode() if isinstance(value, bytes) else value

    def claim(self, message_id: str, seconds: int) -> bool:
        """Take the right to send this message for a while, so two copies never send at once."""
        key = f"{self._key(message_id)}:claim"
        return bool(self._redis.set(key, "1", nx=True, ex=seconds))

    def release(self, message_id: str) -> None:
        """Give the claim back once an attempt has ended."""
        self._redis.delete(f"{self._key(message_id)}:claim")

    def record_attempt(self, message_id: str) -> int:
        """Count an attempt about to be made and return the new count."""
        key = self._key(message_id)
        pipe = self._redis.pipeline()
        pipe.hincrby(key, "attempts", 1)
        pipe.expire(key, self._retention)
        attempts, _ = pipe.execute()
        return int(attempts)

    def record_sent(self, message_id: str, msgid: int) -> None:
        """Mark the message accepted by WeChat and remember its msgid for receipts."""
        self._transition(message_id, SENT, {"msgid": msgid}, clear_error=True)
        self._redis.set(f"{self._prefix}:msgid:{msgid}", message_id, ex=self._retention)

    def record_retrying(self, message_id: str, errcode: int, errmsg: str) -> None:
        """Mark a transient failure that will be retried."""
        self._transition(message_id, RETRYING, {"errcode": errcode, "errmsg": errmsg})

    def record_failed(self, message_id: str, errcode: int, errmsg: str, payload: Any) -> None:
        """Mark a permanent failure, keeping the payload so an operator can act on it."""
        self._transition(
            message_id,
            FAILED,
            {"errcode": errcode, "errmsg": errmsg, "payload": json.dumps(payload)},
        )

    def record_dead(self, message_id: str, errcode: int, errmsg: str, payload: Any) -> None:
        """Mark a message whose retries are exhausted, keeping its payload."""
        self._transition(
            message_id,
            DEAD,
            {"errcode": errcode, "errmsg": errmsg, "payload": json.dumps(payload)},
        )

    def record_deferred(self, message_id: str, errcode: int, errmsg: str, payload: Any) -> None:
        """Mark a message held back by the account's daily quota, keeping its payload."""
        self._transition(
            message_id,
            DEFERRED,
            {"errcode": errcode, "errmsg": errmsg, "payload": json.dumps(payload)},
        )

    def get(self, message_id: str) -> MessageRecord | None:
        """Return the whole record with its history, or None for an unknown id."""
        pipe = self._redis.pipeline()
        pipe.hgetall(self._key(message_id))
        pipe.lrange(self._history_key(message_id), 0, -1)
        raw, history = pipe.execute()
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return MessageRecord(
            id=message_id,
            status=fields.get("status", QUEUED),
            attempts=int(fields.get("attempts", 0)),
            msgid=int(fields["msgid"]) if fields.get("msgid") else None,
            errcode=int(fields["errcode"]) if fields.get("errcode") else None,
            errmsg=fields.get("errmsg") or None,
            history=[json.loads(item) for item in history],
        )

    def _transition(
        self, message_id: str, status: str, fields: dict[str, Any], clear_error: bool = False
    ) -> None:
        now = round(self._clock(), 3)
        key, history = self._key(message_id), self._history_key(message_id)
        entry: dict[str, Any] = {"status": status, "at": now}
        if "errcode" in fields:
            entry["errcode"] = fields["errcode"]
        pipe = self._redis.pipeline()
        mapping: dict[str, str | int | float] = {"status": status, "updated": now, **fields}
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        if clear_error:
            pipe.hdel(key, "errcode", "errmsg")
        pipe.rpush(history, json.dumps(entry, separators=(",", ":")))
        pipe.expire(key, self._retention)
        pipe.expire(history, self._retention)
        pipe.execute()

    def _key(self, message_id: str) -> str:
        return f"{self._prefix}:msg:{message_id}"

    def _history_key(self, message_id: str) -> str:
        return f"{self._key(message_id)}:history"
