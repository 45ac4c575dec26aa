"""The mover's loop: passes until nothing more is due, and waits out Redis being away."""

from __future__ import annotations

import threading
import time

import redis

from notifier.store.schedule import Moved
from notifier.worker.mover import Mover


class FakeSchedule:
    """Hands out `due` entries `most` at a time; raises while `down` is set."""

    def __init__(self, due: int) -> None:
        self.due = due
        self.calls = 0
        self.down = threading.Event()

    def move_due(self, most: int, now: float | None = None) -> Moved:
        self.calls += 1
        if self.down.is_set():
            raise redis.ConnectionError("gone")
        taken, self.due = min(most, self.due), self.due - min(most, self.due)
        return Moved(0.0, [0.05] * taken)


def test_a_pass_moves_everything_due_in_scripts_of_at_most_most() -> None:
    schedule = FakeSchedule(due=250)
    assert Mover(schedule, most=100).move() == 250  # type: ignore[arg-type]
    assert schedule.calls == 3  # 100, 100, 50: the last moved fewer, so the pass ends


def test_the_loop_keeps_running_through_a_redis_outage() -> None:
    schedule = FakeSchedule(due=0)
    schedule.down.set()
    mover = Mover(schedule, tick=0.01)  # type: ignore[arg-type]
    thread = mover.start()
    time.sleep(0.1)
    schedule.due = 5
    schedule.down.clear()
    deadline = time.monotonic() + 5
    while schedule.due and time.monotonic() < deadline:
        time.sleep(0.01)
    mover.stopping.set()
    thread.join(2)
    assert schedule.due == 0 and not thread.is_alive()
