"""Work that waits for its send_at in Redis, not in a worker: entered at admission, moved once.

A message or campaign with a send_at is admitted (notifier/store/admission.py) into a
sorted set scored with its due time, one member per message and one per campaign
however many chunks it has, and a hash holding what will be pushed then: its task
envelopes, built at admission, and its record's keys. It is on no queue and in no
unfinished set, so the reconciler never takes it for lost. A mover (move_due.lua, run
by notifier/worker/mover.py in every worker) pushes due work by intake's own push() in
one atomic step, so it is moved at most once however many movers run; a cancel
(cancel_scheduled.lua) is atomic with it too. Nothing is held in a process: a worker
killed or Redis restarted (with its append-only file) loses no scheduled work.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.store.keys import PREFIX, campaign_key, message_key, schedule_key
from notifier.store.record import DEFAULT_RETENTION
from notifier.store.replies import maybe_text, text
from notifier.store.scripts import source
from notifier.store.unfinished import PUSH_LIMITS, queue_keys

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
# How far ahead a send_at may be, and how far behind (a clock a little slow, a retry).
HORIZON = 30 * 24 * 3600
PAST = 60
# RFC 3339 date-time, whole string, with its offset required ("Z" or ±hh:mm), upper-case
# T and Z, at most nanoseconds (Python reads microseconds and drops the rest).
SEND_AT = re.compile(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})\Z"
)


def due_time(send_at: str) -> float:
    """The Unix time of a send_at that SEND_AT matched; ValueError for a day or time that
    does not exist (2026-02-30, 24:00, a leap second, an offset of 24 hours)."""
    if SEND_AT.fullmatch(send_at) is None:
        raise ValueError("not an RFC 3339 date-time with an offset")
    return round(datetime.fromisoformat(send_at).timestamp(), 3)


def message_work(message_id: str, envelope: str, prefix: str = PREFIX) -> str:
    """What the mover pushes for a scheduled message: its envelope, and its record's keys."""
    return _work("m", message_key(prefix, message_id), [(message_id, envelope)],
                 message_key(prefix, message_id, "history"))  # fmt: skip


def campaign_work(campaign_id: str, tasks: list[tuple[str, str]], prefix: str = PREFIX) -> str:
    """What the mover pushes for a scheduled campaign: each chunk's (task id, envelope)."""
    return _work("c", campaign_key(prefix, campaign_id), tasks)


def _work(kind: str, record: str, tasks: list[tuple[str, str]], history: str = "") -> str:
    work = {"q": kind, "r": record, "t": [list(task) for task in tasks]}
    return json.dumps(work | ({"h": history} if history else {}), separators=(",", ":"))


@dataclass(frozen=True)
class Moved:
    """One mover pass: Redis's time, and how late each entry it moved was, in seconds."""

    now: float
    lateness: list[float]


class Schedule:
    """Moves due work onto the queues, and cancels work that has not been moved yet."""

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
        self.due_key = schedule_key(prefix)
        self.work_key = schedule_key(prefix, "work")
        self._move = client.register_script(source("move_due"))
        self._cancel = client.register_script(source("cancel_scheduled"))

    def move_due(self, most: int, now: float | None = None) -> Moved:
        """Push up to `most` entries due by `now` (None: Redis's clock) onto their queues."""
        keys = [self.due_key, self.work_key, *queue_keys(MESSAGES_QUEUE),
                *queue_keys(CAMPAIGNS_QUEUE)]  # fmt: skip
        stamp = "" if now is None else f"{now:.3f}"
        reply = self._move(keys=keys, args=[stamp, most, *PUSH_LIMITS])
        at = float(text(reply[0]))
        return Moved(at, [round(at - float(text(due)), 3) for due in reply[1:]])

    def waiting(self) -> int:
        """How many messages and campaigns wait for their send_at."""
        return int(self._redis.zcard(self.due_key))

    def due(self, work_id: str) -> float | None:
        """When a waiting message or campaign is due; None once moved or cancelled."""
        score = self._redis.zscore(self.due_key, work_id)
        return None if score is None else float(score)

    def cancel_message(self, message_id: str) -> str | None:
        """Cancel a scheduled message; return the status it had (None: unknown).

        Only `scheduled` becomes `cancelled`; any other status is returned unchanged.
        """
        now = round(self._clock(), 3)
        entry = json.dumps({"status": CANCELLED, "at": now}, separators=(",", ":"))
        keys = [self.due_key, self.work_key, message_key(self._prefix, message_id),
                message_key(self._prefix, message_id, "history")]  # fmt: skip
        args = [message_id, "status", now, entry, self._retention]
        return maybe_text(self._cancel(keys=keys, args=args))

    def cancel_campaign(self, campaign_id: str) -> str | None:
        """Cancel a scheduled campaign; return the state it had (None: unknown).

        Only `scheduled` becomes `cancelled`; any other state is returned unchanged.
        """
        keys = [self.due_key, self.work_key, campaign_key(self._prefix, campaign_id),
                campaign_key(self._prefix, campaign_id, "chunks")]  # fmt: skip
        args = [campaign_id, "state", round(self._clock(), 3), "", self._retention]
        return maybe_text(self._cancel(keys=keys, args=args))
