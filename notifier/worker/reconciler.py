"""Queues again what a broker lost: work accepted, not final, and not seen for too long.

The broker alone cannot promise that accepted work ends final: a worker killed between
taking a message and recording it, a retry Redis refused, or a task rejected without
requeue each drop a message. The unfinished sets (notifier/store/unfinished.py) still hold it.
An entry not seen for longer than the broker's own redelivery (the visibility timeout
plus a margin), and older than everything still waiting in its queue, is in neither
the queue nor a worker. This module decides that; the store (UnfinishedWork) queues it
again, by the same atomic push as intake. A second copy is harmless: the sender's claim
and final-state check skip it, and WeChat shows a repeated client_msg_id once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from notifier.broker.envelopes import queued_at
from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.store.unfinished import UnfinishedWork

log = logging.getLogger(__name__)

# Beyond the visibility timeout: the broker's own redelivery goes first.
MARGIN = 30
# Entries looked at per queue and pass; the rest wait for the next pass.
MOST = 500
# Envelopes read at the head of a queue (the end workers take from) to date what waits.
HEAD = 10
SLACK = 5.0


class Reconciler:
    """Finds unfinished work that no queue or worker holds, and has the store queue it again."""

    def __init__(
        self,
        work: UnfinishedWork,
        stale_after: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._work = work
        self._stale_after = stale_after
        self._clock = clock

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
        detail = f"queued again: not seen for {self._stale_after:.0f} s"
        return self._work.requeue_lost(queue, cutoff, now, MOST, detail)

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
        head = self._work.head(queue, HEAD)
        if not head:
            return cutoff
        stamps = [stamp for raw in head if (stamp := queued_at(raw)) is not None]
        # Slack for a Celery retry, scored just before its publish stamps it.
        return min(cutoff, min(stamps) - SLACK) if stamps else None
