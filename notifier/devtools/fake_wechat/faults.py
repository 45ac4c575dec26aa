"""Queued failures, so tests and benchmarks can script exactly how the next send calls fail.

A fault applies to its next `times` send calls, or, with `for_seconds`, to every send
call for that long after it was queued: an outage. With `touser_prefix` it applies only
to sends to followers whose openid starts so (a share of a campaign's recipients, say),
and leaves every other send to the faults queued without one.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

_KEYS = frozenset({"errcode", "errmsg", "http_status", "delay_ms", "drop", "times", "for_seconds",
                   "touser_prefix"})  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour applied to a single send call."""

    errcode: int | None = None
    errmsg: str | None = None
    http_status: int | None = None
    delay_ms: float = 0
    drop: bool = False
    for_seconds: float = 0  # > 0: every call for this long after it is queued, not `times`
    touser_prefix: str = ""  # only sends to openids starting so; '' for every send


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_one(spec: object) -> tuple[Fault, int]:
    if not isinstance(spec, dict):
        raise ValueError("each fault must be a JSON object")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"unknown fault keys: {sorted(unknown)}")
    errcode, errmsg = spec.get("errcode"), spec.get("errmsg")
    status, delay = spec.get("http_status"), spec.get("delay_ms", 0)
    drop, times = spec.get("drop", False), spec.get("times", 1)
    period = spec.get("for_seconds", 0)
    prefix = spec.get("touser_prefix", "")
    if not isinstance(prefix, str) or ("touser_prefix" in spec and not prefix):
        raise ValueError("touser_prefix must be a non-empty string")
    if errcode is not None and (not _is_int(errcode) or errcode == 0):
        raise ValueError("errcode must be a non-zero integer")
    if errmsg is not None and (errcode is None or not isinstance(errmsg, str)):
        raise ValueError("errmsg must be a string and needs errcode")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise ValueError("http_status must be an integer from 400 to 599")
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise ValueError("delay_ms must be a number >= 0")
    if not isinstance(drop, bool):
        raise ValueError("drop must be a boolean")
    if not _is_int(times) or times < 1:
        raise ValueError("times must be an integer >= 1")
    number = isinstance(period, int | float) and not isinstance(period, bool)
    if "for_seconds" in spec and not (number and period > 0):
        raise ValueError("for_seconds must be a number > 0")
    if period and "times" in spec:
        raise ValueError("choose at most one of times and for_seconds")
    if sum((errcode is not None, status is not None, drop)) > 1:
        raise ValueError("choose at most one of errcode, http_status and drop")
    if errcode is None and status is None and not drop and delay == 0:
        raise ValueError("a fault needs errcode, http_status, delay_ms or drop")
    return Fault(errcode, errmsg, status, float(delay), drop, float(period), prefix), times


def parse_faults(payload: object) -> list[tuple[Fault, int]]:
    """Turn a fault spec or list of specs into (fault, times) pairs, or raise ValueError."""
    specs = payload if isinstance(payload, list) else [payload]
    return [_parse_one(spec) for spec in specs]


class FaultQueue:
    """First-in first-out faults, each used by its next `times` send calls, or by every
    call until its outage ends; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        # (fault, calls left, when its outage ends; None for a counted fault)
        self._queue: deque[tuple[Fault, int, float | None]] = deque()
        self._targeted: list[tuple[Fault, int, float | None]] = []  # those with a prefix
        self._pending = 0

    def extend(self, items: list[tuple[Fault, int]]) -> int:
        """Append faults in order; return how many send calls the counted ones will affect."""
        now = self._clock()
        with self._lock:
            for fault, times in items:
                ends = now + fault.for_seconds if fault.for_seconds else None
                (self._targeted if fault.touser_prefix else self._queue).append(
                    (fault, times, ends)
                )
                self._pending += times if ends is None else 0
            return self._pending

    def pop(self, touser: str = "") -> Fault | None:
        """Take the fault for this send call (to `touser`), if any is pending."""
        now = self._clock()
        with self._lock:
            targeted = self._pop_targeted(touser, now) if self._targeted else None
            if targeted is not None:
                return targeted
            while self._queue:
                fault, times, ends = self._queue[0]
                if ends is None:
                    break
                if now < ends:
                    return fault
                self._queue.popleft()  # that outage is over
            if not self._queue:
                return None
            if times > 1:
                self._queue[0] = (fault, times - 1, None)
            else:
                self._queue.popleft()
            self._pending -= 1
            return fault

    def _pop_targeted(self, touser: str, now: float) -> Fault | None:
        """The first fault queued for `touser`'s openid prefix; the lock is held."""
        for position, (fault, times, ends) in enumerate(self._targeted):
            if ends is not None and now >= ends:
                continue  # that outage is over
            if not touser.startswith(fault.touser_prefix):
                continue
            if ends is None:
                self._pending -= 1
                if times > 1:
                    self._targeted[position] = (fault, times - 1, None)
                else:
                    del self._targeted[position]
            return fault
        return None

    def pending(self) -> int:
        """Count the send calls still to be affected."""
        with self._lock:
            return self._pending

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._queue.clear()
            self._targeted.clear()
            self._pending = 0
