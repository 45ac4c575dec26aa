"""The access token, shared through Redis so a fleet of workers refreshes it once, not once each."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis
from redis.lock import Lock

from notifier.store.keys import PREFIX, account_key, metrics_key
from notifier.store.replies import maybe_text
from notifier.wechat.client import AccessToken

log = logging.getLogger(__name__)

# Refresh this long before WeChat's own expiry, so no send races the deadline.
EXPIRY_MARGIN = 300
MIN_TTL = 60
# Longer than one token call (connect + read timeouts), short enough that a holder
# that died mid-refresh (or lost Redis) does not stall the fleet for long.
LOCK_TIMEOUT = 20
# How long a process trusts the token it last read, sparing Redis a read per send. A
# token refreshed elsewhere meanwhile gets a 40001, and replace() then finds the new one.
LOCAL_SECONDS = 10.0


class TokenSource(Protocol):
    """Anything that can fetch a token from WeChat (the client, or a fake in tests)."""

    @property
    def app_id(self) -> str: ...

    def fetch_token(self, force_refresh: bool = False) -> AccessToken: ...


class TokenStore:
    """Keeps one access token per app id in Redis, refreshed under a lock."""

    def __init__(
        self,
        client: redis.Redis,
        source: TokenSource,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._source = source
        self._clock = clock
        self._local: tuple[float, str] | None = None
        self.key = account_key(prefix, source.app_id, "token")
        self._lock_key = account_key(prefix, source.app_id, "token_lock")
        self._counters = metrics_key(prefix, "counters")

    def current(self) -> str:
        """Return the stored token, fetching one (under the lock) when there is none."""
        local = self._local
        if local is not None and self._clock() < local[0]:
            return local[1]
        token = self._read()
        if token:
            self._remember(token)
            return token
        with self._lock():
            token = self._read()
            if token:
                return token
            return self._fetch_and_store(force=False)

    def replace(self, stale: str) -> str:
        """Return a token other than `stale`, refreshing only if the store still holds `stale`.

        When many workers see the same rejected token at once, the first one in
        the lock refreshes it and the rest find the new token already stored.
        """
        with self._lock():
            token = self._read()
            if token and token != stale:
                self._remember(token)
                return token
            return self._fetch_and_store(force=False, stale=stale)

    def refresh(self) -> str:
        """Fetch and store a token now: the periodic job that keeps the token ahead of expiry."""
        with self._lock():
            return self._fetch_and_store(force=False)

    def _fetch_and_store(self, force: bool, stale: str | None = None) -> str:
        token = self._source.fetch_token(force_refresh=force)
        if stale is not None and token.value == stale and not force:
            # The stable API hands back the token it still believes valid; WeChat
            # rejected it, so ask for a new one explicitly.
            log.warning("access token for %s was rejected; forcing a refresh", self._source.app_id)
            token = self._source.fetch_token(force_refresh=True)
        ttl = max(MIN_TTL, token.expires_in - EXPIRY_MARGIN)
        pipe = self._redis.pipeline()  # the refresh and its count, in one round trip
        pipe.set(self.key, token.value, ex=ttl)
        pipe.hincrby(self._counters, "token_refreshes", 1)
        pipe.execute()
        self._remember(token.value)
        log.info("access token for %s stored for %d s", self._source.app_id, ttl)
        return token.value

    def _remember(self, token: str) -> None:
        self._local = (self._clock() + LOCAL_SECONDS, token)

    def _read(self) -> str | None:
        return maybe_text(self._redis.get(self.key))

    def _lock(self) -> Lock:
        lock: Lock = self._redis.lock(
            self._lock_key, timeout=LOCK_TIMEOUT, blocking_timeout=LOCK_TIMEOUT
        )
        return lock
