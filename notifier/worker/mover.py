"""The mover: every worker process moves due scheduled work onto the queues, every 200 ms.

It runs as a thread (a greenlet under gevent) started when the worker is ready, in
every worker process, so scheduled work moves while any worker runs, and a killed one
takes nothing with it: the work waits in Redis (notifier/store/schedule.py). Several
movers at once are safe, as each pass is one atomic script that takes what it moves out
of the schedule; they only shorten the wait. Celery's eta is not used: a task held past
the visibility timeout is delivered twice, and held tasks sit in a worker's memory
(docs/decisions/0010-scheduled-work-waits-in-redis.md).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import signals

from notifier.store.schedule import Schedule
from notifier.worker.context import worker_context

log = logging.getLogger(__name__)

# Seconds between passes: a due entry waits this long at most, plus one pass's time.
TICK = 0.2
# Entries per script: a pass runs scripts until one moves fewer, so Redis is never held
# long by one (a 10,000-recipient campaign is 100 pushes).
MOST = 100


class Mover:
    """Runs the schedule's atomic move, again and again, until told to stop."""

    def __init__(self, schedule: Schedule, tick: float = TICK, most: int = MOST) -> None:
        self._schedule = schedule
        self._tick = tick
        self._most = most
        self._failing = False
        self.stopping = threading.Event()

    def move(self) -> int:
        """One pass: move everything due now; return how many entries moved."""
        moved = 0
        while True:
            result = self._schedule.move_due(self._most)
            moved += len(result.lateness)
            if result.lateness:
                log.info("moved %d scheduled entries onto the queues, at most %.0f ms late",
                         len(result.lateness), 1000 * max(result.lateness))  # fmt: skip
            if len(result.lateness) < self._most:
                return moved

    def run(self) -> None:
        """Pass every tick until stopped; Redis away is logged once and waited out."""
        while not self.stopping.wait(self._tick):
            try:
                self.move()
            except redis.RedisError as exc:
                if not self._failing:
                    log.warning("scheduled work waits: redis unavailable (%s)", type(exc).__name__)
                self._failing = True
                continue
            if self._failing:
                log.info("scheduled work moves again: redis is back")
                self._failing = False

    def start(self) -> threading.Thread:
        """Run in a daemon thread: a worker's shutdown never waits for it."""
        thread = threading.Thread(target=self.run, name="scheduled-work-mover", daemon=True)
        thread.start()
        return thread


_running: list[Mover] = []


def _start_mover(**_: Any) -> None:
    """Start this worker's mover once it consumes: one per worker process."""
    if not _running:
        mover = Mover(worker_context().stores.schedule)
        mover.start()
        _running.append(mover)


def _stop_mover(**_: Any) -> None:
    """Stop passing when the worker stops; a pass under way finishes, as it is atomic."""
    for mover in _running:
        mover.stopping.set()


signals.worker_ready.connect(_start_mover)
signals.worker_shutting_down.connect(_stop_mover)
