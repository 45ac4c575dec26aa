"""Accepted work not yet final, tracked by the application so a broker's loss is never final.

Every single message and every campaign chunk enters its queue's sorted set in the
same atomic step that queues it, scored with the last time it was queued or touched
by a worker, and leaves it when it reaches a final state (sent, failed, dead,
deferred). A message the broker dropped (a worker killed between taking it and
recording it, a retry that Redis refused, a task rejected without requeue) leaves
its entry behind, untouched; the reconciler (notifier/worker/reconciler.py) queues it again.

Tasks carry only ids, so queuing work again needs nothing but the id: the message's
payload lives in its record, a chunk's recipients in its campaign's chunk hash.
"""

from __future__ import annotations

from notifier.broker.envelopes import WAKE_TOKENS_MAX, WAKE_TOKENS_TTL, task_message, wake_key
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK, MESSAGES_QUEUE, SEND_TASK

# Pushes one task envelope with a wake-up token for one idle worker, and tracks it as
# unfinished, in the caller's atomic step. Used by every script that queues work.
# KEYS[q], KEYS[q+1], KEYS[q+2]: queue, its wake list, its unfinished set. A member of ''
# queues the task untracked (a whole chunk parked by an older version).
PUSH_LUA = """
local function push(queue, wake, unfinished, envelope, member, now, most, ttl)
  redis.call('LPUSH', queue, envelope)
  redis.call('LPUSH', wake, 1)
  redis.call('LTRIM', wake, 0, most - 1)
  redis.call('EXPIRE', wake, ttl)
  if member ~= '' then redis.call('ZADD', unfinished, now, member) end
end
"""


def unfinished_key(queue: str) -> str:
    """The sorted set of `queue`'s unfinished work: member a task id, score when last seen."""
    return f"notifier:unfinished:{queue}"


def chunk_member(campaign_id: str, number: int) -> str:
    """A campaign chunk's task id, which is also its member in the unfinished set."""
    return f"{campaign_id}.{number}"


def split_chunk_member(member: str) -> tuple[str, int] | None:
    """The (batch id, chunk number) of a chunk's task id; None for a single message's id."""
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
    """The three keys PUSH_LUA's push() needs for `queue`, in its order."""
    return [queue, wake_key(queue), unfinished_key(queue)]


PUSH_LIMITS = (WAKE_TOKENS_MAX, WAKE_TOKENS_TTL)
