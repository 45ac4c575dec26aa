"""One send rate for the whole fleet: a token bucket in Redis, shared by every worker process.

Celery's own `rate_limit` counts per worker, so ten workers send ten times as
fast; this bucket is per WeChat account, whatever the number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: celeryconfig imports this module (see test_config)
    import redis

# Refill by elapsed time (Redis's clock, so all hosts agree), then grant up to `want`
# tokens while keeping `reserve` back. Returns {granted, seconds to wait if none}.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, reserve = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = 0
if tokens - reserve >= 1 then
  granted = math.min(want, math.floor(tokens - reserve))
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
local wait = 0
if granted == 0 then wait = (reserve + 1 - tokens) / rate end
return {granted, tostring(wait)}
"""


class RateLimiter:
    """Grants send permits for one account; waiting sleeps only the caller, never a retry."""

    def __init__(
        self,
        client: redis.Redis,
        app_id: str,
        per_second: float,
        prefix: str = "notifier",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._take = client.register_script(_TAKE)
        self.key = f"{prefix}:rate:{app_id}"
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
