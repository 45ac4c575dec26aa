"""Each message's status and history in Redis: what operators see, and what stops double sends."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from notifier.broker.queues import MESSAGES_QUEUE
from notifier.store.keys import PREFIX, index_key, message_key, msgid_key, unfinished_key
from notifier.store.metrics import Tally, metrics_keys
from notifier.store.record import DEFAULT_RETENTION, MessageRecord, iso
from notifier.store.replies import maybe_text, text
from notifier.store.scripts import source
from notifier.store.unfinished import PUSH_LIMITS, message_envelope, queue_keys

__all__ = ["DEFAULT_RETENTION", "MessageRecord", "MessageState", "iso"]

QUEUED = "queued"
RETRYING = "retrying"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
DEAD = "dead"
DEFERRED = "deferred"
# Waiting for its send_at, and withdrawn before it (notifier/store/schedule.py).
SCHEDULED = "scheduled"
CANCELLED = "cancelled"

# A message in one of these states is never sent again unless an operator replays it;
# a cancelled one never is.
FINAL = frozenset({SENT, DELIVERED, FAILED, DEAD, CANCELLED})
# States an operator can send again, keeping the message's id and history.
REPLAYABLE = (FAILED, DEAD, DEFERRED)


def is_payload(payload: Any) -> bool:
    """Whether a task argument is a whole message, not only its id (tasks carry ids now)."""
    return isinstance(payload, dict) and "touser" in payload


def early_receipt(raw: bytes | str) -> tuple[str, str]:
    """The status and reason of a receipt kept by `MessageState.keep_early_receipt`."""
    status, _, reason = text(raw).partition("|")
    return status, reason


class MessageState:
    """Reads and writes message records; every transition is one atomic pipeline."""

    def __init__(
        self,
        client: redis.Redis,
        retention: int = DEFAULT_RETENTION,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._retention = retention
        self._prefix = prefix
        self._clock = clock
        self.dead_index = index_key(prefix, "dead")
        self.deferred_index = index_key(prefix, "deferred")
        self.unfinished = unfinished_key(MESSAGES_QUEUE)
        self._metrics = metrics_keys(prefix)
        self._requeue = client.register_script(source("requeue"))
        self._receipt = client.register_script(source("receipt"))
        self._begin = client.register_script(source("begin"))
        self._sent = client.register_script(source("record_sent"))

    def record_queued(self, message_id: str, payload: dict[str, Any] | None = None) -> None:
        """Create a record as the intake does (tests and tools; intake writes it in Lua)."""
        fields = {"payload": json.dumps(payload)} if payload is not None else {}
        self._transition(message_id, QUEUED, fields)

    def status(self, message_id: str) -> str | None:
        """Return the current status, or None for an unknown id."""
        return maybe_text(self._redis.hget(self._key(message_id), "status"))

    def begin_attempt(
        self, message_id: str, claim_seconds: int, tally: Tally | None = None
    ) -> tuple[int, str, dict[str, Any] | None]:
        """Claim and count an attempt; a claimed one gives `tally` its admission time.

        Returns (attempts, status, stored payload) when claimed, (0, final status, None)
        when there is nothing to send ('' for an unknown id), (-1, claim TTL, None) when
        another worker holds the claim.
        """
        keys = [self._key(message_id), self._claim_key(message_id), self.unfinished,
                self._history_key(message_id)]  # fmt: skip
        args = [claim_seconds, self._retention, message_id, round(self._clock(), 3)]
        result, detail, *rest = self._begin(keys=keys, args=args)
        stored = json.loads(rest[0]) if rest and rest[0] else None
        if tally is not None and len(rest) > 1 and rest[1]:
            tally.admitted = float(rest[1])
        return int(result), text(detail), stored

    def release(self, message_id: str) -> None:
        """Give the claim back once an attempt has ended."""
        self._redis.delete(self._claim_key(message_id))

    def seen(self, message_id: str) -> None:
        """Mark a message seen by a worker that leaves it waiting (its task published again
        for later), so the reconciler does not take it for lost."""
        self._redis.zadd(self.unfinished, {message_id: round(self._clock(), 3)}, xx=True)

    def record_sent(self, message_id: str, msgid: int, tally: Tally | None = None) -> None:
        """Mark the message accepted by WeChat, remember its msgid, and release its claim."""
        now = round(self._clock(), 3)
        keys = [
            self._key(message_id),
            self._history_key(message_id),
            self._claim_key(message_id),
            self.msgid_key(msgid),
            self.early_receipt_key(msgid),
            self.unfinished,
            *self._metrics,
        ]
        tally = tally or Tally()
        tally.sent(now)
        entry = json.dumps({"status": SENT, "at": now}, separators=(",", ":"))
        args = [now, msgid, entry, self._retention, message_id, *tally.lua_args()]
        early = self._sent(keys=keys, args=args)
        if early:
            # WeChat's receipt outran our own bookkeeping; apply it now.
            self.record_receipt(message_id, *early_receipt(early))

    def record_retrying(
        self, message_id: str, errcode: int, errmsg: str, tally: Tally | None = None
    ) -> None:
        """Mark a transient failure that will be retried; its retry counts as seen now."""
        pipe = self._redis.pipeline()
        fields = {"errcode": errcode, "errmsg": errmsg}
        now = self._transition(message_id, RETRYING, fields, pipe=pipe)
        pipe.zadd(self.unfinished, {message_id: now}, xx=True)
        tally = tally or Tally()
        tally.count("retries")
        tally.write(pipe, self._prefix)
        pipe.execute()

    def record_failed(
        self, message_id: str, errcode: int, errmsg: str, payload: Any, tally: Tally | None = None
    ) -> None:
        """Mark a permanent failure, keeping the payload so an operator can replay it."""
        tally = tally or Tally()
        tally.count(f"failed:{errcode}")
        self._park(message_id, FAILED, errcode, errmsg, payload, self.dead_index, tally)

    def record_dead(
        self, message_id: str, errcode: int, errmsg: str, payload: Any, tally: Tally | None = None
    ) -> None:
        """Mark a message whose retries are exhausted, keeping its payload."""
        tally = tally or Tally()
        tally.count("dead")
        self._park(message_id, DEAD, errcode, errmsg, payload, self.dead_index, tally)

    def record_deferred(
        self, message_id: str, errcode: int, errmsg: str, payload: Any, tally: Tally | None = None
    ) -> None:
        """Mark a message held back by the account's daily quota, keeping its payload."""
        self._park(message_id, DEFERRED, errcode, errmsg, payload, self.deferred_index, tally)

    def keep_early_receipt(self, msgid: int, status: str, reason: str) -> None:
        """Hold a receipt that arrived before the send was recorded, for record_sent to apply."""
        # Minutes, not days: a send is recorded within seconds of WeChat's answer.
        self._redis.set(self.early_receipt_key(msgid), f"{status}|{reason[:64]}", ex=600)

    def early_receipt_key(self, msgid: int) -> str:
        """Where a receipt waits for its message's send to be recorded."""
        return msgid_key(self._prefix, msgid, "early_receipt")

    def record_receipt(self, message_id: str, status: str, reason: str) -> bool:
        """Apply WeChat's delivery receipt once; repeated or concurrent pushes change nothing."""
        now = round(self._clock(), 3)
        entry = json.dumps({"status": status, "at": now, "detail": reason}, separators=(",", ":"))
        errmsg = reason if status == FAILED else ""
        keys = [self._key(message_id), self._history_key(message_id)]
        return bool(self._receipt(keys=keys, args=[status, now, reason, errmsg, entry]))

    def requeue(self, message_id: str, reason: str) -> str | None:
        """Queue a failed, dead or deferred message again; return the status it had.

        Returns None when the message is not (or no longer) replayable.
        """
        now = round(self._clock(), 3)
        entry = json.dumps({"status": QUEUED, "at": now, "detail": reason}, separators=(",", ":"))
        keys = [self._key(message_id), self._history_key(message_id), self.dead_index,
                self.deferred_index, *queue_keys(MESSAGES_QUEUE)]  # fmt: skip
        args = [*REPLAYABLE, now, entry, message_id, message_envelope(message_id, now),
                *PUSH_LIMITS, self._retention]  # fmt: skip
        return maybe_text(self._requeue(keys=keys, args=args))

    def ids(self, index: str, limit: int = 100, offset: int = 0) -> list[str]:
        """Ids in an index (dead letters or deferred), oldest first."""
        return [text(m) for m in self._redis.zrange(index, offset, offset + limit - 1)]

    def count(self, index: str, until: float | None = None) -> int:
        """How many ids an index holds (parked no later than `until`, if given)."""
        if until is None:
            return int(self._redis.zcard(index))
        return int(self._redis.zcount(index, "-inf", until))

    def ids_until(self, index: str, until: float, limit: int) -> list[str]:
        """The oldest ids parked no later than `until`: a snapshot that re-failures don't join."""
        members = self._redis.zrangebyscore(index, "-inf", until, start=0, num=limit)
        return [text(m) for m in members]

    def message_for_msgid(self, msgid: int) -> str | None:
        """The message id WeChat's msgid belongs to, for receipts."""
        return maybe_text(self._redis.get(self.msgid_key(msgid)))

    def msgid_key(self, msgid: int) -> str:
        """Where a WeChat msgid points to its message id."""
        return msgid_key(self._prefix, msgid)

    def get(self, message_id: str) -> MessageRecord | None:
        """Return the whole record with its history, or None for an unknown id."""
        pipe = self._redis.pipeline()
        pipe.hgetall(self._key(message_id))
        pipe.lrange(self._history_key(message_id), 0, -1)
        raw, history = pipe.execute()
        if not raw:
            return None
        fields = {text(k): text(v) for k, v in raw.items()}
        return MessageRecord(
            id=message_id,
            status=fields.get("status", QUEUED),
            attempts=int(fields.get("attempts", 0)),
            msgid=int(fields["msgid"]) if fields.get("msgid") else None,
            errcode=int(fields["errcode"]) if fields.get("errcode") else None,
            errmsg=fields.get("errmsg") or None,
            payload=json.loads(fields["payload"]) if fields.get("payload") else None,
            history=[json.loads(item) for item in history],
            send_at=fields.get("send_at") or None,
        )

    def _park(
        self, message_id: str, status: str, errcode: int, errmsg: str, payload: Any, index: str,
        tally: Tally | None,
    ) -> None:  # fmt: skip
        pipe = self._redis.pipeline()
        if tally is not None:  # counted in the same transaction as the status it counts
            tally.write(pipe, self._prefix)
        fields: dict[str, Any] = {"errcode": errcode, "errmsg": errmsg}
        if is_payload(payload):  # else the record kept the payload from admission
            fields["payload"] = json.dumps(payload)
        self._transition(message_id, status, fields, pipe=pipe)
        now = self._clock()
        # Parked where an operator sees it: no longer the reconciler's to queue again.
        pipe.zrem(self.unfinished, message_id)
        pipe.zadd(index, {message_id: now})
        # Ids outlive nothing: drop those whose records have expired.
        pipe.zremrangebyscore(index, 0, now - self._retention)
        pipe.execute()

    def _transition(
        self,
        message_id: str,
        status: str,
        fields: dict[str, Any],
        clear: tuple[str, ...] = (),
        detail: str | None = None,
        pipe: Any = None,
    ) -> float:
        """Write a status change and its history entry; return its time."""
        now = round(self._clock(), 3)
        key, history = self._key(message_id), self._history_key(message_id)
        entry: dict[str, Any] = {"status": status, "at": now}
        if "errcode" in fields:
            entry["errcode"] = fields["errcode"]
        if detail:
            entry["detail"] = detail
        own = pipe is None
        pipe = self._redis.pipeline() if own else pipe
        mapping: dict[str, str | int | float] = {"status": status, "updated": now, **fields}
        pipe.hset(key, mapping=mapping)
        if clear:
            pipe.hdel(key, *clear)
        pipe.rpush(history, json.dumps(entry, separators=(",", ":")))
        pipe.expire(key, self._retention)
        pipe.expire(history, self._retention)
        if own:
            pipe.execute()
        return now

    def _key(self, message_id: str) -> str:
        return message_key(self._prefix, message_id)

    def _history_key(self, message_id: str) -> str:
        return message_key(self._prefix, message_id, "history")

    def _claim_key(self, message_id: str) -> str:
        return message_key(self._prefix, message_id, "claim")
