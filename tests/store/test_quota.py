"""The daily-quota pause: it lasts until 00:00 Asia/Shanghai and an operator can lift it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis
from freezegun import freeze_time

from notifier.store.quota import QuotaGate, next_reset


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("now", "reset"),
    [
        ("2026-11-26T10:00:00+08:00", "2026-11-27T00:00:00+08:00"),
        ("2026-11-26T23:59:59+08:00", "2026-11-27T00:00:00+08:00"),
        ("2026-11-27T00:00:00+08:00", "2026-11-28T00:00:00+08:00"),
        # 17:00 UTC on the 26th is already 01:00 on the 27th in Shanghai.
        ("2026-11-26T17:00:00+00:00", "2026-11-28T00:00:00+08:00"),
        ("2026-12-31T20:00:00+08:00", "2027-01-01T00:00:00+08:00"),
    ],
)
def test_the_quota_resets_at_the_next_shanghai_midnight(now: str, reset: str) -> None:
    assert next_reset(ts(now)) == ts(reset)


def test_the_reset_follows_the_clock() -> None:
    with freeze_time(datetime(2026, 11, 26, 12, 0, tzinfo=UTC)):
        assert next_reset(time.time()) == ts("2026-11-27T00:00:00+08:00")


def test_a_pause_lasts_until_the_reset_and_can_be_lifted(redis_client: redis.Redis) -> None:
    gate = QuotaGate(redis_client, "wx1")
    assert gate.paused() is None
    until = gate.pause("reach max api daily quota limit")
    assert until == next_reset(time.time())
    pause = gate.paused()
    assert pause is not None and pause["errmsg"] == "reach max api daily quota limit"
    # Redis expires the pause at the reset by itself.
    assert _expires_at(redis_client, gate.key) == int(until)
    assert gate.resume()
    assert gate.paused() is None
    assert not gate.resume()


def test_other_workers_see_the_pause(redis_client: redis.Redis) -> None:
    QuotaGate(redis_client, "wx1").pause("quota")
    assert QuotaGate(redis_client, "wx1").paused() is not None
    assert QuotaGate(redis_client, "wx2").paused() is None


def _expires_at(client: redis.Redis, key: str) -> int:
    """When `key` expires, in Unix seconds, by the server's own clock: TIME plus PTTL in one
    script, as EXPIRETIME needs Redis 7 and the bundled server is 6.2."""
    script = (
        "local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000) + "
        "redis.call('PTTL', KEYS[1])"
    )
    return round(int(client.eval(script, 1, key)) / 1000)
