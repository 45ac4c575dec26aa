"""What the fake has delivered and counted, so tests can check outcomes rather than calls."""

import threading
from collections.abc import Callable, Mapping
from typing import Any

FIRST_MSGID = 200000001
COUNTERS = (
    "send_calls",
    "delivered",
    "duplicates_suppressed",
    "http_faults",
    "token_calls",
    "stable_token_calls",
    "force_refreshes",
    "tokens_issued",
)


class Ledger:
    """Deliveries, the client_msg_id de-duplication table and counters; thread-safe."""

    def __init__(self, dedupe_window: float, clock: Callable[[], float]) -> None:
        self._window = dedupe_window
        self._clock = clock
        self._lock = threading.Lock()
        self._next_msgid = FIRST_MSGID
        self._messages: list[dict[str, Any]] = []
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._errors: dict[str, int] = {}

    def count(self, name: str) -> None:
        """Add one to a counter."""
        with self._lock:
            self._counters[name] += 1

    def count_error(self, errcode: int) -> None:
        """Add one to the tally of a non-zero errcode answered by the send endpoint."""
        key = str(errcode)
        with self._lock:
            self._errors[key] = self._errors.get(key, 0) + 1

    def accept(self, body: Mapping[str, Any]) -> int:
        """Record a delivery unless its client_msg_id was seen lately; return its msgid."""
        client_msg_id = body.get("client_msg_id") or None
        with self._lock:
            now = self._clock()
            self._forget_before(now - self._window)
            key = (str(body["touser"]), str(client_msg_id)) if client_msg_id else None
            if key is not None and key in self._seen:
                self._counters["duplicates_suppressed"] += 1
                return self._seen[key][0]
            msgid = self._next_msgid
            self._next_msgid += 1
            if key is not None:
                self._seen[key] = (msgid, now)
            self._messages.append(
                {
                    "msgid": msgid,
                    "touser": body["touser"],
                    "template_id": body["template_id"],
                    "data": body["data"],
                    "url": body.get("url"),
                    "miniprogram": body.get("miniprogram"),
                    "client_msg_id": client_msg_id,
                    "received_at": now,
                }
            )
            self._counters["delivered"] += 1
            return msgid

    def _forget_before(self, cutoff: float) -> None:
        # Entries are inserted in time order, so the oldest sit at the front.
        while self._seen:
            key = next(iter(self._seen))
            if self._seen[key][1] > cutoff:
                return
            del self._seen[key]

    def messages(self, since: int = 0) -> list[dict[str, Any]]:
        """Return delivered messages from position `since` on, oldest first."""
        with self._lock:
            return self._messages[since:]

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Return the last `limit` delivered messages, newest first."""
        if limit <= 0:
            return []
        with self._lock:
            return self._messages[-limit:][::-1]

    def stats(self) -> dict[str, Any]:
        """Return a snapshot of every counter."""
        with self._lock:
            return {**self._counters, "errors_by_code": dict(self._errors)}

    def reset(self) -> None:
        """Forget deliveries, counters and the de-duplication table; msgids keep increasing."""
        with self._lock:
            self._messages.clear()
            self._seen.clear()
            self._counters = dict.fromkeys(COUNTERS, 0)
            self._errors.clear()
