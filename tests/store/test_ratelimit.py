"""The fleet-wide rate limit: one bucket in Redis, shared by every process that sends."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from notifier.parsing import parse_rate
from notifier.store.ratelimit import RateLimiter


@pytest.mark.parametrize(("text", "rate"), [("500/s", 500.0), ("600/m", 10.0), ("7200/h", 2.0)])
def test_rates_are_parsed(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0/s", "10/d", "-5/s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_the_burst_is_granted_then_the_bucket_is_empty(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, "wx1", per_second=50)
    assert limiter.try_take(30)[0] == 30
    assert limiter.try_take(30)[0] == 20
    granted, wait = limiter.try_take(1)
    assert granted == 0 and 0 < wait <= 0.05


def test_a_reserve_keeps_permits_for_others(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, "wx1", per_second=100)
    assert limiter.try_take(1000, reserve=10)[0] == 90
    assert limiter.try_take(1, reserve=10)[0] == 0
    assert limiter.try_take(5)[0] == 5  # a caller without a reserve still gets them


def test_many_workers_share_one_rate(redis_client: redis.Redis) -> None:
    # Ten "workers" (threads with their own clients) together get ~rate * time permits.
    rate, seconds = 200.0, 1.5
    counts: list[int] = []

    def worker() -> None:
        own = redis.Redis(connection_pool=redis_client.connection_pool)
        limiter = RateLimiter(own, "wx-shared", per_second=rate)
        taken, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            taken += limiter.take(5)
        counts.append(taken)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(counts)
    # burst (rate) + rate * seconds, give or take the last grants in flight
    assert rate * seconds <= total <= rate * (seconds + 1) + 50, total
    assert all(c > 0 for c in counts), counts


def test_accounts_have_their_own_buckets(redis_client: redis.Redis) -> None:
    one = RateLimiter(redis_client, "wx1", per_second=5)
    two = RateLimiter(redis_client, "wx2", per_second=5)
    assert one.try_take(5)[0] == 5
    assert two.try_take(5)[0] == 5
