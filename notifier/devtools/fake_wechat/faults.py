"""Queued failures, so tests and benchmarks can script exactly how the next send calls fail."""

import threading
from collections import deque
from dataclasses import dataclass

_KEYS = frozenset({"errcode", "errmsg", "http_status", "delay_ms", "drop", "times"})


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour applied to a single send call."""

    errcode: int | None = None
    errmsg: str | None = None
    http_status: int | None = None
    delay_ms: float = 0
    drop: bool = False


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
    if sum((errcode is not None, status is not None, drop)) > 1:
        raise ValueError("choose at most one of errcode, http_status and drop")
    if errcode is None and status is None and not drop and delay == 0:
        raise ValueError("a fault needs errcode, http_status, delay_ms or drop")
    return Fault(errcode, errmsg, status, float(delay), drop), times


def parse_faults(payload: object) -> list[tuple[Fault, int]]:
    """Turn a fault spec or list of specs into (fault, times) pairs, or raise ValueError."""
    specs = payload if isinstance(payload, list) else [payload]
    return [_parse_one(spec) for spec in specs]


class FaultQueue:
    """First-in first-out faults, each used by its next `times` send calls; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[Fault, int]] = deque()
        self._pending = 0

    def extend(self, items: list[tuple[Fault, int]]) -> int:
        """Append faults in order; return how many send calls they will affect in all."""
        with self._lock:
            self._queue.extend(items)
            self._pending += sum(times for _, times in items)
            return self._pending

    def pop(self) -> Fault | None:
        """Take the fault for this send call, if any is pending."""
        with self._lock:
            if not self._queue:
                return None
            fault, times = self._queue[0]
            if times > 1:
                self._queue[0] = (fault, times - 1)
            else:
                self._queue.popleft()
            self._pending -= 1
            return fault

    def pending(self) -> int:
        """Count the send calls still to be affected."""
        with self._lock:
            return self._pending

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._queue.clear()
            self._pending = 0
