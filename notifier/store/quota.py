"""The daily-quota pause: after errcode 45009 nothing is sent until 00:00 Asia/Shanghai."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from notifier.store.keys import PREFIX, account_key

log = logging.getLogger(__name__)

# China has kept UTC+8 without daylight saving since 1991; no tz database needed.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
_CACHE_SECONDS = 1.0


def next_reset(now: float) -> float:
    """The Unix time of the next 00:00 in Asia/Shanghai after `now`."""
    local = datetime.fromtimestamp(now, tz=SHANGHAI)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


class QuotaGate:
    """Whether the account may send now; shared by every worker through Redis."""

    def __init__(
        self,
        client: redis.Redis,
        app_id: str,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._clock = clock
        self.key = account_key(prefix, app_id, "quota")
        self._app_id = app_id
        self._cached: tuple[float, dict[str, Any] | None] = (0.0, None)

    def pause(self, errmsg: str) -> float:
        """Stop sending until the quota resets; return when that is."""
        now = self._clock()
        until = next_reset(now)
        info = {"since": round(now, 3), "until": until, "errmsg": errmsg}
        if self._redis.set(self.key, json.dumps(info), nx=True, exat=int(until)):
            log.warning(
                "daily quota reached for %s: sending paused until %s",
                self._app_id,
                datetime.fromtimestamp(until, tz=SHANGHAI).isoformat(),
            )
        self._cached = (now + _CACHE_SECONDS, info)
        return until

    def paused(self) -> dict[str, Any] | None:
        """The pause in force, if any (cached for a second to spare Redis on the hot path)."""
        now = self._clock()
        expires, info = self._cached
        if now < expires:
            return info
        raw = self._redis.get(self.key)
        info = json.loads(raw) if raw else None
        self._cached = (now + _CACHE_SECONDS, info)
        return info

    def resume(self) -> bool:
        """Lift the pause early, after an operator cleared the quota; True if one was in force."""
        self._cached = (0.0, None)
        lifted = bool(self._redis.delete(self.key))
        if lifted:
            log.warning("daily quota pause for %s lifted by an operator", self._app_id)
        return lifted
