"""Campaign chunks held back by the daily quota, and their release when it resets."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from notifier.broker.envelopes import task_message
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK
from notifier.store.campaigns import chunks_key
from notifier.store.unfinished import (
    PUSH_LIMITS,
    PUSH_LUA,
    chunk_envelope,
    chunk_member,
    queue_keys,
)


class DeferredChunks:
    """Campaign chunks held back by the daily quota, queued again when it resets.

    A chunk waits here as its reference (its recipients stay in the campaign's chunk
    hash); a chunk parked before tasks carried references waits whole.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection
        self.key = "notifier:deferred-chunks"
        self._release = connection.register_script(_RELEASE)

    def park(self, chunk: dict[str, Any]) -> None:
        """Keep a chunk's reference (or a whole chunk) until the pause ends."""
        self._redis.rpush(self.key, json.dumps(chunk))

    def count(self) -> int:
        """Chunks waiting."""
        return int(self._redis.llen(self.key))

    def release(self) -> int:
        """Queue every parked chunk again, each moved in one atomic step.

        Returns how many recipients the chunks queued again hold.
        """
        recipients = 0
        # Left by the release of an older version that died between moving and publishing.
        while self._redis.lmove(f"{self.key}:moving", self.key, "RIGHT", "LEFT") is not None:
            pass
        # Only what is parked now: a chunk deferred again during the release (the quota
        # ran out at once) waits for the next one instead of circling here.
        budget = self.count()
        while budget > 0 and (raws := self._redis.lrange(self.key, 0, min(budget, 100) - 1)):
            budget -= len(raws)
            now = round(time.time(), 3)
            args: list[Any] = [now, *PUSH_LIMITS]
            sizes = self._redis.pipeline(transaction=False)
            for raw in raws:
                chunk = json.loads(raw)
                if "recipients" in chunk:  # parked whole: queued whole and untracked, as before
                    member, envelope = "", task_message(CHUNK_TASK, [chunk], CAMPAIGNS_QUEUE)
                    recipients += len(chunk["recipients"])
                else:
                    member = chunk_member(chunk["batch"], chunk["chunk"])
                    envelope = chunk_envelope(chunk["batch"], chunk["chunk"], now)
                    sizes.hget(chunks_key("notifier", chunk["batch"]), str(chunk["chunk"]))
                args += [raw, envelope, member]
            recipients += sum(len(json.loads(c)["recipients"]) for c in sizes.execute() if c)
            moved = int(self._release(keys=[self.key, *queue_keys(CAMPAIGNS_QUEUE)], args=args))
            if moved < len(raws):
                break  # another release took the rest
        return recipients


# Moves parked chunks to the queue: each leaves the list only as its task is pushed, so
# two releases at once queue a chunk once. ARGV: now, the push limits, then per chunk
# its parked text, its envelope and its task id ('' for a whole chunk: not tracked).
_RELEASE = (
    PUSH_LUA
    + """
local moved = 0
for i = 4, #ARGV, 3 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    push(KEYS[2], KEYS[3], KEYS[4], ARGV[i + 1], ARGV[i + 2], ARGV[1], tonumber(ARGV[2]),
         ARGV[3])
    moved = moved + 1
  end
end
return moved
"""
)
