"""The breaker's state machine in Redis: opens on the error rate past a minimum volume, one
trial for the fleet, closed by its success, opened again by its failure, a rolling window."""

from __future__ import annotations

import logging

import pytest
import redis

from notifier.store.breaker import FRESH_SECONDS, TRIAL_WAIT, Breaker, BreakerPolicy, Clearance
from tests.conftest import Clock

POLICY = BreakerPolicy(min_calls=20, error_rate=0.5, window=10, sleep=30, trial_seconds=20)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def process(client: redis.Redis, clock: Clock) -> Breaker:
    """One worker process's breaker for the account; each keeps its own cache."""
    return Breaker(client, "wx_app", POLICY, clock=clock)


@pytest.fixture
def breaker(redis_client: redis.Redis, clock: Clock) -> Breaker:
    return process(redis_client, clock)


def calls(breaker: Breaker, ok: int = 0, failed: int = 0) -> float | None:
    """Record `ok` successes then `failed` failures; what the last record said."""
    said = None
    for _ in range(ok):
        said = breaker.record(Clearance(), failed=False)
    for _ in range(failed):
        said = breaker.record(Clearance(), failed=True)
    return said


def open_breaker(breaker: Breaker) -> None:
    assert calls(breaker, failed=POLICY.min_calls) == POLICY.sleep
    assert breaker.status().state == "open"


def trial_after_sleep(breaker: Breaker, clock: Clock) -> Clearance:
    """Open the breaker, wait out its sleep, and take the trial."""
    open_breaker(breaker)
    clock.advance(POLICY.sleep)
    trial = breaker.ask()
    assert trial.trial
    return trial


def test_failures_below_the_minimum_volume_never_open_it(breaker: Breaker) -> None:
    assert calls(breaker, failed=POLICY.min_calls - 1) is None
    assert breaker.status().state == "closed"
    assert breaker.ask() == Clearance()
    assert calls(breaker, failed=1) == POLICY.sleep  # the 20th call, all failed
    assert breaker.status().open


def test_it_opens_when_failures_reach_the_error_rate(breaker: Breaker) -> None:
    assert calls(breaker, ok=12, failed=11) is None  # 11 of 23: below half
    assert calls(breaker, failed=1) == POLICY.sleep  # 12 of 24: half
    status = breaker.status()
    assert (status.state, status.open, status.retry_in) == ("open", True, POLICY.sleep)


def test_successes_gathered_in_a_process_count_with_its_next_failure(
    breaker: Breaker, redis_client: redis.Redis, clock: Clock
) -> None:
    calls(breaker, ok=30)  # the first is sent at once, the rest wait for a second
    assert calls(breaker, failed=15) is None  # 15 of 45
    other = process(redis_client, clock)
    assert calls(other, failed=15) == POLICY.sleep  # 30 of 60


def test_the_window_rolls(breaker: Breaker, clock: Clock) -> None:
    calls(breaker, failed=15)
    clock.advance(POLICY.window + 1)
    assert calls(breaker, failed=10) is None  # the first 15 have left the window
    clock.advance(POLICY.window / 2)
    assert calls(breaker, failed=10) == POLICY.sleep  # 20 within the last 10 s


def test_while_open_nothing_is_let_through_until_the_sleep_is_over(
    breaker: Breaker, clock: Clock
) -> None:
    open_breaker(breaker)
    clock.advance(10)
    assert breaker.ask() == Clearance(wait=POLICY.sleep - 10)
    clock.advance(POLICY.sleep - 10 - 0.5)
    assert breaker.ask().wait == pytest.approx(0.5)


def test_after_the_sleep_exactly_one_trial_goes_across_the_fleet(
    breaker: Breaker, redis_client: redis.Redis, clock: Clock
) -> None:
    open_breaker(breaker)
    clock.advance(POLICY.sleep)
    workers = [process(redis_client, clock) for _ in range(5)]
    answers = [w.ask() for w in [breaker, *workers, breaker]]
    trials = [a for a in answers if a.trial]
    assert len(trials) == 1 and answers[0].trial
    assert all(0 < a.wait <= TRIAL_WAIT for a in answers[1:])
    assert breaker.status().state == "half_open"


def test_a_successful_trial_closes_it_on_a_fresh_window(
    breaker: Breaker, redis_client: redis.Redis, clock: Clock
) -> None:
    trial = trial_after_sleep(breaker, clock)
    assert breaker.record(trial, failed=False) is None
    assert trial.trial == ""  # spent
    assert breaker.status().state == "closed"
    other = process(redis_client, clock)
    assert other.ask() == Clearance()
    assert calls(other, failed=POLICY.min_calls - 1) is None  # the window starts anew


def test_a_failed_trial_opens_it_for_another_sleep(breaker: Breaker, clock: Clock) -> None:
    trial = trial_after_sleep(breaker, clock)
    assert breaker.record(trial, failed=True) == POLICY.sleep
    status = breaker.status()
    assert (status.state, status.retry_in) == ("open", POLICY.sleep)
    clock.advance(POLICY.sleep)
    assert breaker.ask().trial  # the next trial


def test_calls_in_flight_when_it_opened_do_not_move_it(breaker: Breaker, clock: Clock) -> None:
    open_breaker(breaker)
    assert calls(breaker, ok=5) is None
    assert calls(breaker, failed=5) == POLICY.sleep
    clock.advance(POLICY.sleep)
    assert breaker.status().state == "half_open"
    assert calls(breaker, ok=1, failed=1) == 0  # still open, a trial due


def test_a_trial_given_back_goes_to_the_next_caller(
    breaker: Breaker, redis_client: redis.Redis, clock: Clock
) -> None:
    trial = trial_after_sleep(breaker, clock)
    other = process(redis_client, clock)
    assert other.ask().wait > 0
    breaker.release(trial)
    assert process(redis_client, clock).ask().trial


def test_a_process_learns_of_an_opening_elsewhere_within_a_second(
    breaker: Breaker, redis_client: redis.Redis, clock: Clock
) -> None:
    assert breaker.ask() == Clearance()  # read: closed
    open_breaker(process(redis_client, clock))
    assert breaker.ask() == Clearance()  # trusted for a moment
    clock.advance(FRESH_SECONDS)
    assert breaker.ask().wait == pytest.approx(POLICY.sleep - FRESH_SECONDS)


def test_each_transition_is_logged_once_naming_the_account(
    breaker: Breaker, redis_client: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    other = process(redis_client, clock)
    with caplog.at_level(logging.WARNING, logger="notifier.store.breaker"):
        calls(breaker, failed=POLICY.min_calls)
        calls(other, failed=3)
        clock.advance(POLICY.sleep)
        trial, waiting = breaker.ask(), other.ask()
        breaker.record(trial, failed=True)
        clock.advance(POLICY.sleep)
        trial = other.ask()
        other.record(trial, failed=False)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(": ")[0] for line in lines] == [
        "circuit breaker for wx_app opened",
        "circuit breaker for wx_app half-open",
        "circuit breaker for wx_app opened again",
        "circuit breaker for wx_app half-open",
        "circuit breaker for wx_app closed",
    ]
    assert waiting.wait > 0
    assert "20 of 20 calls" in lines[0]
