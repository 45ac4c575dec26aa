"""Queues again what a broker lost: work accepted, not final, and not seen for too long.

The broker alone cannot promise that accepted work ends final: a worker killed between
taking a message and recording it, a retry Redis refused, or a task rejected without
requeue each drop a message. The unfinished sets (notifier/store/unfinished.py) still hold it.
An entry not seen for longer than the broker's own redelivery (the visibility timeout
plus a margin), and older than everything still waiting in its queue, is in neither
the queue nor a worker: it is queued again by the same atomic push as intake. A second
copy is harmless: the sender's claim and final-state check skip it, and WeChat shows a
repeated client_msg_id once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from notifier.broker.envelopes import queued_at
from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.store.campaigns import campaign_key, chunks_key
from notifier.store.messages import DEFAULT_RETENTION, history_key, message_key
from notifier.store.replies import text
from notifier.store.unfinished import (
    PUSH_LIMITS,
    PUSH_LUA,
    chunk_envelope,
    message_envelope,
    queue_keys,
    split_chunk_member,
    unfinished_key,
)

log = logging.getLogger(__name__)

# Beyond the visibility timeout: the broker's own redelivery goes first.
MARGIN = 30
# Entries looked at per queue and pass; the rest wait for the next pass.
MOST = 500
# Envelopes read at the head of a queue (the end workers take from) to date what waits.
HEAD = 10
SLACK = 5.0

# Per candidate: three keys (a message's record, history and claim; a chunk's hash and
# its campaign's record, twice) and four values (member, kind, chunk number, envelope).
# ARGV[1..6]: cutoff, now, push limits (2), the history entry, the record retention.
# Returns {queued, dropped}.
_REVIVE = (
    PUSH_LUA
    + """
local cutoff, now, entry = tonumber(ARGV[1]), ARGV[2], ARGV[5]
local final = {sent = true, delivered = true, failed = true, dead = true, deferred = true}
local queued, dropped = 0, 0
for c = 0, (#KEYS - 3) / 3 - 1 do
  local k, a = 4 + 3 * c, 7 + 4 * c
  local member = ARGV[a]
  local score = redis.call('ZSCORE', KEYS[3], member)
  if score and tonumber(score) <= cutoff then
    local gone, busy
    if ARGV[a + 1] == 'm' then
      local status = redis.call('HGET', KEYS[k], 'status')
      gone = not status or final[status]
      busy = redis.call('EXISTS', KEYS[k + 2]) == 1
    else
      gone = redis.call('HEXISTS', KEYS[k], ARGV[a + 2]) == 0
      busy = false
    end
    if gone then
      redis.call('ZREM', KEYS[3], member)
      dropped = dropped + 1
    elseif not busy then
      push(KEYS[1], KEYS[2], KEYS[3], ARGV[a + 3], member, now, tonumber(ARGV[3]), ARGV[4])
      if ARGV[a + 1] == 'm' then
        redis.call('HSET', KEYS[k], 'status', 'queued', 'updated', now)
        redis.call('RPUSH', KEYS[k + 1], entry)
        redis.call('EXPIRE', KEYS[k + 1], ARGV[6])
      end
      queued = queued + 1
    end
  end
end
return {queued, dropped}
"""
)


class Reconciler:
    """Finds unfinished work that no queue or worker holds, and queues it again."""

    def __init__(
        self,
        client: redis.Redis,
        stale_after: float,
        retention: int = DEFAULT_RETENTION,
        prefix: str = "notifier",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._stale_after = stale_after
        self._retention = retention
        self._prefix = prefix
        self._clock = clock
        self._revive = client.register_script(_REVIVE)

    def run(self) -> dict[str, int]:
        """One pass over both queues; return how many entries were queued again per queue."""
        queued = {queue: self._pass(queue) for queue in (MESSAGES_QUEUE, CAMPAIGNS_QUEUE)}
        if any(queued.values()):
            log.warning("queued again work that no queue or worker held: %s", queued)
        return queued

    def _pass(self, queue: str) -> int:
        now = round(self._clock(), 3)
        cutoff = self.cutoff(queue, now)
        if cutoff is None:
            return 0
        unfinished = unfinished_key(queue)
        members = [text(m) for m in self._redis.zrangebyscore(
            unfinished, "-inf", f"({cutoff}", start=0, num=MOST)]  # fmt: skip
        if not members:
            return 0
        keys = queue_keys(queue)
        args = [cutoff, now, *PUSH_LIMITS, self._entry(now), self._retention]
        for member in members:
            member_keys, member_args = self._candidate(queue, member, now)
            keys += member_keys
            args += member_args
        queued, _ = self._revive(keys=keys, args=args)
        return int(queued)

    def cutoff(self, queue: str, now: float) -> float | None:
        """Entries last seen before this are in neither the queue nor a worker; None: wait.

        Work is scored when queued and whenever a worker sees it, and its envelope carries
        the time it was queued (queued_at), which never changes. A queue is first in, first
        out, and what a worker returns (kombu's restore) goes back to the head with its old
        stamp, so the oldest stamp at the head is no later than any in the queue: an entry
        scored before it is not in the queue. A head without stamps (tasks queued by an
        older version, or by someone else) gives no date: the pass waits for it to drain.
        """
        cutoff = now - self._stale_after
        head = self._redis.lrange(queue, -HEAD, -1)
        if not head:
            return cutoff
        stamps = [stamp for raw in head if (stamp := queued_at(raw)) is not None]
        # Slack for a Celery retry, scored just before its publish stamps it.
        return min(cutoff, min(stamps) - SLACK) if stamps else None

    def _candidate(self, queue: str, member: str, now: float) -> tuple[list[str], list[Any]]:
        if queue == MESSAGES_QUEUE:
            record = message_key(self._prefix, member)
            keys = [record, history_key(self._prefix, member), f"{record}:claim"]
            return keys, [member, "m", "", message_envelope(member, now)]
        chunk = split_chunk_member(member)
        if chunk is None:  # not a chunk's id: dropped as gone
            return [f"{self._prefix}:none"] * 3, [member, "c", "", ""]
        campaign_id, number = chunk
        keys = [chunks_key(self._prefix, campaign_id), campaign_key(self._prefix, campaign_id)] * 2
        return keys[:3], [member, "c", str(number), chunk_envelope(campaign_id, number, now)]

    def _entry(self, now: float) -> str:
        detail = f"queued again: not seen for {self._stale_after:.0f} s"
        return json.dumps({"status": "queued", "at": now, "detail": detail}, separators=(",", ":"))
