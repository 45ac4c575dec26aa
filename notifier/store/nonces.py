"""Callback nonces seen recently, so one captured callback URL cannot be posted again."""

from __future__ import annotations

import hashlib
import time

import redis

from notifier.store.keys import PREFIX, digest_key
from notifier.wechat.receipts import CallbackUnproven


class ReplayGuard:
    """Refuses stale callbacks and absorbs repeated ones, so a captured URL cannot be replayed.

    WeChat signs only the token, timestamp and nonce in plain mode, not the body:
    without this, one logged callback URL would let anyone post receipts for ever.
    """

    def __init__(self, client: redis.Redis, window: int = 300, prefix: str = PREFIX) -> None:
        self._redis = client
        self._window = window
        self._prefix = prefix

    def fresh(self, timestamp: str, nonce: str, now: float | None = None) -> bool:
        """True the first time a (timestamp, nonce) within the window is seen.

        Raises:
            CallbackUnproven: the timestamp is not a number or is outside the window.
        """
        self.check_time(timestamp, now)
        return bool(self._redis.set(self._key(timestamp, nonce), "1", nx=True, ex=2 * self._window))

    def check_time(self, timestamp: str, now: float | None = None) -> None:
        """Refuse a timestamp that is not a Unix time within the window, before any parsing.

        Raises:
            CallbackUnproven: the timestamp is not a number or is outside the window.
        """
        # ASCII digits only: isdigit() alone passes "²", which int() then refuses.
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            raise CallbackUnproven("callback timestamp is not a Unix time")
        current = time.time() if now is None else now
        if abs(current - int(timestamp)) > self._window:
            raise CallbackUnproven("callback timestamp is more than 5 minutes from now")

    def forget(self, timestamp: str, nonce: str) -> None:
        """Un-spend a nonce whose push could not be applied, so WeChat's retry still counts."""
        self._redis.delete(self._key(timestamp, nonce))

    def _key(self, timestamp: str, nonce: str) -> str:
        digest = hashlib.sha256(f"{timestamp}|{nonce}".encode()).hexdigest()[:32]
        return digest_key(self._prefix, "callback_nonce", digest)
