"""The token store: one refresh for a fleet, TTL from expires_in, and no refresh loops."""

from __future__ import annotations

import threading
import time

import redis

from notifier.store.keys import PREFIX, account_key
from notifier.store.tokens import EXPIRY_MARGIN, MIN_TTL, TokenStore
from notifier.wechat.client import AccessToken


class Source:
    """Issues numbered tokens, like WeChat; the stable API repeats a token until forced."""

    app_id = "wx_test"

    def __init__(self, stable: bool = False, delay: float = 0.0) -> None:
        self.calls: list[bool] = []
        self.stable = stable
        self.delay = delay
        self.serial = 0

    def fetch_token(self, force_refresh: bool = False) -> AccessToken:
        time.sleep(self.delay)
        self.calls.append(force_refresh)
        if not (self.stable and self.serial and not force_refresh):
            self.serial += 1
        return AccessToken(f"token-{self.serial}", 7200)


def test_a_missing_token_is_fetched_once_and_stored_with_a_ttl(redis_client: redis.Redis) -> None:
    source = Source()
    store = TokenStore(redis_client, source)
    assert store.current() == "token-1"
    assert store.current() == "token-1"
    assert source.calls == [False]
    ttl = redis_client.ttl(store.key)
    assert 7200 - EXPIRY_MARGIN - 5 <= ttl <= 7200 - EXPIRY_MARGIN
    assert store.key == account_key(PREFIX, "wx_test", "token")


def test_many_workers_with_the_same_stale_token_refresh_once(redis_client: redis.Redis) -> None:
    source = Source(delay=0.05)
    store = TokenStore(redis_client, source)
    stale = store.current()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.replace(stale))) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {"token-2"}
    assert len(source.calls) == 2  # the first fetch, then exactly one refresh


def test_a_token_that_was_already_replaced_is_not_refreshed_again(
    redis_client: redis.Redis,
) -> None:
    source = Source()
    store = TokenStore(redis_client, source)
    first = store.current()
    store.replace(first)
    assert store.replace(first) == "token-2"
    assert len(source.calls) == 2


def test_stable_api_repeating_a_rejected_token_is_forced_once(redis_client: redis.Redis) -> None:
    source = Source(stable=True)
    store = TokenStore(redis_client, source)
    stale = store.current()
    assert store.replace(stale) == "token-2"
    assert source.calls == [False, False, True]


def test_refresh_replaces_the_stored_token(redis_client: redis.Redis) -> None:
    source = Source()
    store = TokenStore(redis_client, source)
    store.current()
    assert store.refresh() == "token-2"
    assert store.current() == "token-2"


def test_a_token_near_its_end_is_kept_no_shorter_than_the_floor(redis_client: redis.Redis) -> None:
    class Short(Source):
        def fetch_token(self, force_refresh: bool = False) -> AccessToken:
            return AccessToken("short", 200)

    store = TokenStore(redis_client, Short())
    store.current()
    assert MIN_TTL - 2 <= redis_client.ttl(store.key) <= MIN_TTL
