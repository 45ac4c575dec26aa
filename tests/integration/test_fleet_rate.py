"""The fleet-wide send rate holds across worker processes, counted at the fake WeChat."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import Stack

RATE = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("fleet"), WECHAT_SEND_RATE=f"{RATE}/s")
    with running.running():
        running.start_worker("worker2")
        yield running


def test_two_workers_together_keep_to_one_rate(stack: Stack) -> None:
    ids = stack.post_many(100, "Rate")
    stack.assert_each_sent_once(ids, timeout=60)
    arrivals = sorted(m["received_at"] for m in stack.delivered() if m["client_msg_id"] in set(ids))
    # A one-second burst of RATE, then RATE a second: 100 sends need at least 4 s.
    span = arrivals[-1] - arrivals[0]
    assert span >= (len(ids) - RATE) / RATE * 0.9, f"100 sends in {span:.2f}s"
    # And no second holds more than the burst plus a second's worth.
    for start in arrivals:
        in_window = sum(1 for t in arrivals if start <= t < start + 1.0)
        assert in_window <= 2 * RATE + 2, in_window
