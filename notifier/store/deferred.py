"""Campaign chunks held back by the daily quota, and their release when it resets."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from notifier.broker.envelopes import task_message
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK
from notifier.store.keys import PREFIX, campaign_key, deferred_chunks_key
from notifier.store.scripts import source
from notifier.store.unfinished import PUSH_LIMITS, chunk_envelope, chunk_member, queue_keys


class DeferredChunks:
    """Campaign chunks held back by the daily quota, queued again when it resets.

    A chunk waits here as its reference (its recipients stay in the campaign's chunk
    hash); a chunk parked before tasks carried references waits whole.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection
        self.key = deferred_chunks_key()
        self._release = connection.register_script(source("release_deferred"))

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
        moving = deferred_chunks_key("moving")
        while self._redis.lmove(moving, self.key, "RIGHT", "LEFT") is not None:
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
                    sizes.hget(campaign_key(PREFIX, chunk["batch"], "chunks"), str(chunk["chunk"]))
                args += [raw, envelope, member]
            recipients += sum(len(json.loads(c)["recipients"]) for c in sizes.execute() if c)
            moved = int(self._release(keys=[self.key, *queue_keys(CAMPAIGNS_QUEUE)], args=args))
            if moved < len(raws):
                break  # another release took the rest
        return recipients
