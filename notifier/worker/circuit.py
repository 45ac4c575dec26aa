"""The account's circuit breaker as the senders use it: asked before a send, told each outcome."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from notifier.errors import MinuteQuotaError, TransientError, WeChatError
from notifier.store.breaker import Breaker, Clearance

log = logging.getLogger(__name__)
T = TypeVar("T")

# Waiters come back spread over this share of their wait (and a second), so that the
# fleet's backlog returns over a while, not at one instant. With the wait at most
# BREAKER_SLEEP_SECONDS, itself at most half the visibility timeout, a countdown stays
# below the visibility timeout: a waiting task is never redelivered as a second copy.
JITTER_SHARE = 0.5


class CircuitOpen(Exception):
    """Raised when the account's breaker is open: the work waits for it, spending no retry.

    `failure` is the transient failure that found it open, when a call was made;
    `remaining` holds a chunk's recipients still to send.
    """

    def __init__(
        self,
        retry_in: float,
        failure: WeChatError | None = None,
        remaining: list[Any] | None = None,
    ) -> None:
        super().__init__(f"WeChat's circuit breaker is open; retry in {retry_in:.1f}s")
        self.retry_in = retry_in
        self.failure = failure
        self.remaining = remaining or []

    def countdown(self) -> float:
        """Seconds until the task looks again: the breaker's wait, spread a little.

        At most 1.5 times BREAKER_SLEEP_SECONDS + 1, which config.py keeps below the
        visibility timeout.
        """
        return self.retry_in + random.uniform(0, 1 + self.retry_in * JITTER_SHARE)


class Circuit:
    """Wraps each call to WeChat in the breaker; with no breaker (switched off), calls pass."""

    def __init__(self, breaker: Breaker | None = None) -> None:
        self._breaker = breaker

    def ask(self) -> Clearance:
        """Clearance for a send; raises CircuitOpen when no send may be tried now."""
        if self._breaker is None:
            return Clearance()
        try:
            clearance = self._breaker.ask()
        except redis.RedisError as exc:
            # The breaker is advice: without Redis's answer, the send decides for itself.
            log.warning("circuit breaker unreadable (%s); sending", type(exc).__name__)
            return Clearance()
        if clearance.wait > 0:
            raise CircuitOpen(clearance.wait)
        return clearance

    def call(self, clearance: Clearance, send: Callable[[], int]) -> int:
        """Make one call and record how it ended: a transient failure counts against WeChat,
        any other answer (quota, token, permanent codes included) shows it up.

        Raises:
            CircuitOpen: the call failed transiently and the breaker is open now.
        """
        breaker = self._breaker
        if breaker is None:
            return send()
        try:
            msgid = send()
        except TransientError as exc:
            counted = not isinstance(exc, MinuteQuotaError)
            wait = self._record(breaker, clearance, failed=counted)
            if counted and wait is not None:
                raise CircuitOpen(wait, failure=exc) from exc
            raise
        except WeChatError:
            self._record(breaker, clearance, failed=False)
            raise
        self._record(breaker, clearance, failed=False)
        return msgid

    def fetch(self, clearance: Clearance, fetch: Callable[[], T]) -> T:
        """Get what a send needs from WeChat (its access token): a transient failure counts
        against WeChat like a failed send, a success says nothing (a cached token made no call).

        Raises:
            CircuitOpen: the fetch failed transiently and the breaker is open now.
        """
        try:
            return fetch()
        except TransientError as exc:
            if self._breaker is None or isinstance(exc, MinuteQuotaError):
                raise
            wait = self._record(self._breaker, clearance, failed=True)
            if wait is not None:
                raise CircuitOpen(wait, failure=exc) from exc
            raise

    @staticmethod
    def _record(breaker: Breaker, clearance: Clearance, failed: bool) -> float | None:
        """Tell the breaker; a Redis error here must not undo a send WeChat accepted."""
        try:
            return breaker.record(clearance, failed=failed)
        except redis.RedisError as exc:
            log.warning("circuit breaker not updated (%s)", type(exc).__name__)
            return None

    def release(self, clearance: Clearance) -> None:
        """End a send: a trial that made no call goes to the next caller."""
        if self._breaker is not None:
            self._breaker.release(clearance)
