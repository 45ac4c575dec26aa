"""A circuit breaker per WeChat account, in Redis, so the whole fleet stops calling a dead WeChat.

Closed, calls go through and their outcomes fill a rolling window of ten buckets. When the
window holds at least `min_calls` calls and failures reach `error_rate` of them, it opens.
Open, no call is made until `sleep` seconds have passed; then one caller in the fleet holds
the trial key and makes the one trial call. Its success closes the breaker on a fresh
window; its failure opens it for another `sleep`. Only transient failures count (busy,
HTTP 5xx, timeouts, network): any other answer shows that WeChat is up.

Each process keeps what it last learnt (a closed breaker for a second, an open one until
its sleep ends) and sends its successes in one call a second, so a send costs a round
trip only when it fails. Times are the callers' clocks (hosts kept in sync by NTP): a
skew shifts a window or a sleep by as much, and never lets two trials through at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from notifier.store.keys import PREFIX, account_key
from notifier.store.replies import maybe_text, text
from notifier.store.scripts import source

log = logging.getLogger(__name__)

# How long a process trusts a closed breaker it read, and how long it gathers successes.
FRESH_SECONDS = 1.0
# The longest wait given while another caller's trial runs: a trial usually takes well
# under a second, and its success should not keep the rest waiting a whole sleep.
TRIAL_WAIT = 5


@dataclass(frozen=True)
class BreakerPolicy:
    """When the breaker opens and how long it stays open (BREAKER_* in config.py)."""

    min_calls: int = 20
    error_rate: float = 0.5
    window: float = 10.0
    sleep: float = 30.0
    # How long a trial may take before another caller is let through instead.
    trial_seconds: int = 20


@dataclass
class Clearance:
    """The breaker's answer to one caller: go ahead, or wait `wait` seconds.

    `trial` holds the trial key's token while this caller's next call is the trial; it
    is cleared once that call's outcome is recorded (or the trial is given back).
    """

    wait: float = 0.0
    trial: str = ""


@dataclass(frozen=True)
class BreakerStatus:
    """What the breaker says now: `state` is closed, open or half_open (a trial is due or
    running); `open` is true in both of the latter, while ordinary sends are held back."""

    state: str
    open: bool
    retry_in: float


@dataclass(frozen=True)
class _Known:
    closed: bool
    until: float  # when an open breaker lets a trial through
    fresh: float  # until when this is trusted without asking Redis


class Breaker:
    """One account's breaker; thread-safe, one instance per process."""

    def __init__(
        self,
        client: redis.Redis,
        app_id: str,
        policy: BreakerPolicy | None = None,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._app_id = app_id
        self._policy = policy or BreakerPolicy()
        self._clock = clock
        self.key = account_key(prefix, app_id, "breaker")
        self.trial_key = account_key(prefix, app_id, "breaker_trial")
        self._ask = client.register_script(source("breaker_ask"))
        self._record = client.register_script(source("breaker_record"))
        self._release = client.register_script(source("breaker_release"))
        self._lock = threading.Lock()
        self._known = _Known(closed=True, until=0.0, fresh=0.0)
        self._successes = 0
        self._flush_at = 0.0

    def ask(self) -> Clearance:
        """Whether a call may be made now: a clearance, perhaps for the trial, or a wait."""
        now = self._clock()
        known = self._known
        if now < known.fresh:
            return Clearance() if known.closed else Clearance(wait=known.until - now)
        token = uuid.uuid4().hex
        args = [round(now, 3), token, self._policy.trial_seconds, TRIAL_WAIT]
        verdict, wait, transition = self._ask(keys=[self.key, self.trial_key], args=args)
        if text(transition):
            log.warning("circuit breaker for %s half-open: one trial send to WeChat",
                        self._app_id)  # fmt: skip
        if text(verdict) == "trial":
            return Clearance(trial=token)
        return self._learn(now, text(verdict) == "closed", float(wait))

    def record(self, clearance: Clearance, failed: bool) -> float | None:
        """Count one call's outcome (`failed`: transient); the wait if the breaker is open now."""
        now = self._clock()
        if clearance.trial:
            token, clearance.trial = clearance.trial, ""
            return self._step(now, int(not failed), int(failed), token)
        if not failed:
            with self._lock:
                self._successes += 1
                if now < self._flush_at:
                    return None
                successes, self._successes = self._successes, 0
                self._flush_at = now + FRESH_SECONDS
            self._step(now, successes, 0, "")
            return None
        with self._lock:
            successes, self._successes = self._successes, 0
        return self._step(now, successes, 1, "")

    def release(self, clearance: Clearance) -> None:
        """Give back a trial that made no call, so the next caller makes it at once."""
        if clearance.trial:
            self._release(keys=[self.trial_key], args=[clearance.trial])
            clearance.trial = ""

    def status(self) -> BreakerStatus:
        """The breaker's state as Redis holds it now, for metrics and operators."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(self.key, "state", "until")
        pipe.exists(self.trial_key)
        (state, until), trial = pipe.execute()
        if maybe_text(state) != "open":
            return BreakerStatus("closed", False, 0.0)
        left = max(0.0, float(text(until)) - self._clock())
        return BreakerStatus("open" if left > 0 and not trial else "half_open", True, left)

    def _step(self, now: float, successes: int, failures: int, token: str) -> float | None:
        policy = self._policy
        args = [round(now, 3), policy.window, policy.min_calls, policy.error_rate, policy.sleep,
                successes, failures, token]  # fmt: skip
        state, wait, transition, calls, failed = self._record(
            keys=[self.key, self.trial_key], args=args
        )
        self._announce(text(transition), int(calls), int(failed))
        known = self._learn(now, text(state) == "closed", float(wait))
        return None if text(state) == "closed" else known.wait

    def _learn(self, now: float, closed: bool, wait: float) -> Clearance:
        """Remember what Redis said: a closed breaker for a moment, an open one until its
        sleep ends (only a trial, after that, can close it). A wait is never longer than the
        sleep window: it is computed from whichever host's clock opened the breaker."""
        wait = min(wait, self._policy.sleep)
        fresh = now + FRESH_SECONDS if closed else now + wait
        self._known = _Known(closed=closed, until=now + wait, fresh=fresh)
        return Clearance() if closed else Clearance(wait=wait)

    def _announce(self, transition: str, calls: int, failures: int) -> None:
        """Log a transition: only the process that made it sees one, so it is logged once."""
        sleep = self._policy.sleep
        if transition == "opened":
            log.warning("circuit breaker for %s opened: %d of %d calls to WeChat failed within "
                        "%gs; no sends for %gs", self._app_id, failures, calls,
                        self._policy.window, sleep)  # fmt: skip
        elif transition == "reopened":
            log.warning("circuit breaker for %s opened again: the trial send failed; next "
                        "trial in %gs", self._app_id, sleep)  # fmt: skip
        elif transition == "closed":
            log.warning("circuit breaker for %s closed: the trial send succeeded", self._app_id)
