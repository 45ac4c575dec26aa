"""One send rate for the whole fleet: a token bucket in Redis, shared by every worker process.

Celery's own `rate_limit` counts per worker, so ten workers send ten times as
fast; this bucket is per WeChat account, whatever the number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from notifier.store.keys import PREFIX, account_key
from notifier.store.scripts import source


class RateLimiter:
    """Grants send permits for one account; waiting sleeps only the caller, never a retry."""

    def __init__(
        self,
        client: redis.Redis,
        app_id: str,
        per_second: float,
        prefix: str = PREFIX,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._take = client.register_script(source("take_permits"))
        self.key = account_key(prefix, app_id, "rate")
        self.per_second = per_second
        # A one-second burst: enough to keep senders busy without overshooting WeChat.
        self.burst = max(1.0, per_second)
        self._sleep = sleep

    def try_take(self, want: int = 1, reserve: float = 0.0) -> tuple[int, float]:
        """Take up to `want` permits now, leaving `reserve` for others; return (granted, wait)."""
        granted, wait = self._take(
            keys=[self.key], args=[self.per_second, self.burst, want, reserve]
        )
        return int(granted), float(wait)

    def take(self, want: int = 1, reserve: float = 0.0) -> int:
        """Block (sleeping this thread or greenlet only) until at least one permit is granted."""
        while True:
            granted, wait = self.try_take(want, reserve)
            if granted:
                return granted
            self._sleep(min(max(wait, 0.001), 1.0))
