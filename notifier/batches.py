"""Campaign state in Redis, kept compact: one hash per batch, a few bytes per recipient outcome.

A queued recipient costs nothing here; it lives only inside its chunk's task. Once
it has an outcome, it takes one short hash field, and the batch's counters move.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from notifier.record import iso
from notifier.state import FINAL

COUNTED = ("retrying", "sent", "delivered", "failed", "dead", "deferred")

# Set one recipient's outcome and move the batch counters with it, atomically; a sent
# one also gets its msgid pointed at it (KEYS[4]), so its delivery receipt finds it.
_SET = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
local old_status = old and string.match(old, '^[^|]+') or nil
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local new_status = string.match(ARGV[2], '^[^|]+')
if old_status ~= new_status then
  if old_status then redis.call('HINCRBY', KEYS[1], 'n:' .. old_status, -1) end
  redis.call('HINCRBY', KEYS[1], 'n:' .. new_status, 1)
end
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[4]) end
return old_status
"""


def recipient_id(batch_id: str, index: int) -> str:
    """A recipient's message id; also its client_msg_id, so a resend is shown once."""
    return f"{batch_id}-{index}"


def split_recipient_id(message_id: str) -> tuple[str, int] | None:
    """The (batch id, index) of a recipient's message id, or None for a single message."""
    batch_id, sep, index = message_id.partition("-")
    if not sep or len(batch_id) != 32 or not index.isdigit():
        return None
    return batch_id, int(index)


@dataclass(frozen=True)
class Outcome:
    """A recipient's latest outcome, as stored in one hash field."""

    status: str
    attempts: int
    msgid: int | None = None
    errcode: int | None = None

    def encode(self) -> str:
        return f"{self.status}|{self.attempts}|{self.msgid or ''}|{self.errcode or ''}"

    @classmethod
    def decode(cls, raw: str) -> Outcome:
        status, attempts, msgid, errcode = raw.split("|")
        return cls(
            status, int(attempts), int(msgid) if msgid else None, int(errcode) if errcode else None
        )


class BatchStore:
    """Reads and writes batches, their counters and their recipients' outcomes."""

    def __init__(
        self,
        client: redis.Redis,
        retention: int,
        prefix: str = "notifier",
    ) -> None:
        self._redis = client
        self._retention = retention
        self._prefix = prefix
        self._set = client.register_script(_SET)

    def state(self, batch_id: str) -> str | None:
        """The batch's state, or None when it is unknown (or expired)."""
        value = self._redis.hget(self._key(batch_id), "state")
        return value.decode() if isinstance(value, bytes) else value

    def final_indexes(self, batch_id: str, indexes: Iterable[int]) -> set[int]:
        """Those of `indexes` whose recipients reached a final state (never to be resent)."""
        wanted = list(indexes)
        if not wanted:
            return set()
        raw = self._redis.hmget(self._outcomes(batch_id), [str(i) for i in wanted])
        return {
            index
            for index, value in zip(wanted, raw, strict=True)
            if value is not None and _text(value).split("|", 1)[0] in FINAL
        }

    def record(
        self, batch_id: str, index: int, outcome: Outcome, touser: str = "", errmsg: str = ""
    ) -> None:
        """Store a recipient's outcome; failures also go on the batch's failure list."""
        failure = ""
        if outcome.status in ("failed", "dead"):
            failure = json.dumps(
                {
                    "id": recipient_id(batch_id, index),
                    "touser": touser,
                    "status": outcome.status,
                    "errcode": outcome.errcode,
                    "errmsg": errmsg,
                },
                ensure_ascii=False,
            )
        keys = [self._key(batch_id), self._outcomes(batch_id), self._failures(batch_id)]
        args: list[str | int] = [str(index), outcome.encode(), failure, self._retention]
        if outcome.status == "sent" and outcome.msgid is not None:
            keys.append(f"{self._prefix}:msgid:{outcome.msgid}")
            args.append(recipient_id(batch_id, index))
        self._set(keys=keys, args=args)

    def apply_receipt(self, batch_id: str, index: int, status: str, reason: str) -> bool:
        """Move a sent recipient to delivered or failed; repeated receipts change nothing."""
        current = self.outcome(batch_id, index)
        if current is None or current.status != "sent":
            return False
        outcome = Outcome(status, current.attempts, current.msgid, None)
        self.record(batch_id, index, outcome, "", reason)
        return True

    def count(self, batch_id: str) -> int | None:
        """How many recipients the batch has, or None when it is unknown."""
        value = self._redis.hget(self._key(batch_id), "count")
        return int(value) if value is not None else None

    def recipient_view(self, batch_id: str, index: int) -> dict[str, Any] | None:
        """The status API's view of one recipient, or None when there is no such recipient."""
        count = self.count(batch_id)
        if count is None or not 0 <= index < count:
            return None
        view: dict[str, Any] = {"id": recipient_id(batch_id, index), "batch_id": batch_id}
        view.update(status="queued", attempts=0)
        outcome = self.outcome(batch_id, index)
        if outcome is not None:
            view.update(status=outcome.status, attempts=outcome.attempts)
            if outcome.msgid is not None:
                view["msgid"] = outcome.msgid
            if outcome.errcode is not None:
                view["errcode"] = outcome.errcode
        return view

    def outcome(self, batch_id: str, index: int) -> Outcome | None:
        """One recipient's outcome; None while it is still queued (or unknown)."""
        raw = self._redis.hget(self._outcomes(batch_id), str(index))
        return Outcome.decode(_text(raw)) if raw else None

    def summary(self, batch_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any] | None:
        """Counts per status and a page of failed recipients, for the batch status API."""
        pipe = self._redis.pipeline()
        pipe.hgetall(self._key(batch_id))
        pipe.lrange(self._failures(batch_id), offset, offset + max(limit, 1) - 1)
        pipe.llen(self._failures(batch_id))
        raw, failures, failed_total = pipe.execute()
        if not raw:
            return None
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        count = int(meta["count"])
        counts = {status: int(meta.get(f"n:{status}", 0)) for status in COUNTED}
        counts["queued"] = count - sum(counts.values())
        return {
            "id": batch_id,
            "state": meta["state"],
            "template_id": meta["template_id"],
            "count": count,
            "created": iso(float(meta["created"])),
            "counts": counts,
            "failures": {
                "total": failed_total,
                "offset": offset,
                "items": [json.loads(f) for f in failures],
            },
        }

    def _key(self, batch_id: str) -> str:
        return f"{self._prefix}:batch:{batch_id}"

    def _outcomes(self, batch_id: str) -> str:
        return f"{self._key(batch_id)}:r"

    def _failures(self, batch_id: str) -> str:
        return f"{self._key(batch_id)}:failed"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
