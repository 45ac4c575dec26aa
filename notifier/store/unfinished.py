"""Accepted work not yet final, tracked by the application so a broker's loss is never final.

Every single message and every campaign chunk enters its queue's sorted set in the
same atomic step that queues it, scored with the last time it was queued or touched
by a worker, and leaves it when it reaches a final state (sent, failed, dead,
deferred). A message the broker dropped (a worker killed between taking it and
recording it, a retry that Redis refused, a task rejected without requeue) leaves
its entry behind, untouched: the reconciler (notifier/worker/reconciler.py) tells when
it is lost, and UnfinishedWork below queues it again.

Tasks carry only ids, so queuing work again needs nothing but the id: the message's
payload lives in its record, a chunk's recipients in its campaign's chunk hash.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from notifier.broker.envelopes import task_message
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK, MESSAGES_QUEUE, SEND_TASK
from notifier.broker.wake import WAKE_TOKENS_MAX, WAKE_TOKENS_TTL, wake_key
from notifier.store.keys import PREFIX, absent_key, campaign_key, message_key, unfinished_key
from notifier.store.record import DEFAULT_RETENTION
from notifier.store.replies import text
from notifier.store.scripts import source


def chunk_member(campaign_id: str, number: int) -> str:
    """A campaign chunk's task id, which is also its member in the unfinished set."""
    return f"{campaign_id}.{number}"


def split_chunk_member(member: str) -> tuple[str, int] | None:
    """The (campaign id, chunk number) of a chunk's task id; None for a single message's id."""
    campaign_id, sep, number = member.partition(".")
    if not sep or not number.isascii() or not number.isdigit():
        return None
    return campaign_id, int(number)


def message_envelope(message_id: str, now: float) -> str:
    """The send_template task for a message: its id only; the payload is in its record.

    `now` must be the time the push scores the work with: the envelope's queued_at.
    """
    return task_message(
        SEND_TASK, [{"id": message_id}], MESSAGES_QUEUE, task_id=message_id, queued_at=now
    )


def chunk_envelope(campaign_id: str, number: int, now: float) -> str:
    """The send_chunk task for a chunk: its reference only; recipients are in the campaign."""
    member = chunk_member(campaign_id, number)
    ref = {"batch": campaign_id, "chunk": number}
    return task_message(CHUNK_TASK, [ref], CAMPAIGNS_QUEUE, task_id=member, queued_at=now)


def prepare() -> None:
    """Build the envelope templates now, so a broker setting that does not fit the
    installed kombu stops the process at start-up rather than at its first request."""
    message_envelope("0" * 32, 0.0)
    chunk_envelope("0" * 32, 0, 0.0)


def queue_keys(queue: str) -> list[str]:
    """The three keys push() (lua/push.lua) needs for `queue`, in its order."""
    return [queue, wake_key(queue), unfinished_key(queue)]


PUSH_LIMITS = (WAKE_TOKENS_MAX, WAKE_TOKENS_TTL)


class UnfinishedWork:
    """Queues again what no queue or worker holds: the store's side of the reconciler.

    Which entries count as lost, and when to look, is the reconciler's policy; the
    records and keys it touches, and the one atomic step that queues them, are here.
    """

    def __init__(
        self, client: redis.Redis, retention: int = DEFAULT_RETENTION, prefix: str = PREFIX
    ) -> None:
        self._redis = client
        self._retention = retention
        self._prefix = prefix
        self._revive = client.register_script(source("revive"))

    def head(self, queue: str, count: int) -> list[bytes]:
        """The envelopes at the end of `queue` that workers take from, up to `count`."""
        return list(self._redis.lrange(queue, -count, -1))

    def requeue_lost(self, queue: str, cutoff: float, now: float, most: int, detail: str) -> int:
        """Queue again up to `most` entries of `queue` last seen before `cutoff`; how many.

        An entry whose message or chunk became final leaves the set instead; one whose
        message is being sent (its claim held) stays, untouched. A message queued again
        is back to queued, with `detail` in its history, in the same step as its push.
        """
        members = [text(m) for m in self._redis.zrangebyscore(
            unfinished_key(queue), "-inf", f"({cutoff}", start=0, num=most)]  # fmt: skip
        if not members:
            return 0
        entry = {"status": "queued", "at": now, "detail": detail}
        keys = queue_keys(queue)
        args = [cutoff, now, *PUSH_LIMITS, json.dumps(entry, separators=(",", ":")),
                self._retention]  # fmt: skip
        for member in members:
            member_keys, member_args = self._candidate(queue, member, now)
            keys += member_keys
            args += member_args
        queued, _ = self._revive(keys=keys, args=args)
        return int(queued)

    def _candidate(self, queue: str, member: str, now: float) -> tuple[list[str], list[Any]]:
        """Three keys and four values per entry, in the order lua/revive.lua reads them."""
        if queue == MESSAGES_QUEUE:
            keys = [message_key(self._prefix, member), message_key(self._prefix, member, "history"),
                    message_key(self._prefix, member, "claim")]  # fmt: skip
            return keys, [member, "m", "", message_envelope(member, now)]
        chunk = split_chunk_member(member)
        if chunk is None:  # not a chunk's id: dropped as gone
            return [absent_key(self._prefix)] * 3, [member, "c", "", ""]
        campaign_id, number = chunk
        chunks = campaign_key(self._prefix, campaign_id, "chunks")
        keys = [chunks, campaign_key(self._prefix, campaign_id), chunks]
        return keys, [member, "c", str(number), chunk_envelope(campaign_id, number, now)]
