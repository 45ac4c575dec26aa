"""Faults for some followers only (`touser_prefix`): the rest of the sends are left alone."""

from __future__ import annotations

import pytest

from notifier.devtools.fake_wechat.faults import FaultQueue, parse_faults
from tests.conftest import Clock


def test_a_targeted_fault_hits_only_its_followers_and_is_used_up() -> None:
    queue = FaultQueue()
    queue.extend(parse_faults([{"errcode": -1, "touser_prefix": "oFlaky", "times": 2},
                               {"errcode": 45011}]))  # fmt: skip
    assert queue.pending() == 3
    assert queue.pop("oSteady01") is not None  # the untargeted fault, first in line
    assert queue.pop("oSteady01") is None
    first, second = queue.pop("oFlaky001"), queue.pop("oFlaky002")
    assert first is not None and second is not None and first.errcode == -1
    assert queue.pop("oFlaky003") is None and queue.pending() == 0


def test_a_targeted_outage_ends_on_time() -> None:
    clock = Clock()
    queue = FaultQueue(clock)
    queue.extend(parse_faults({"errcode": -1, "touser_prefix": "oFlaky", "for_seconds": 5}))
    assert queue.pop("oFlaky001") is not None and queue.pop("oFlaky001") is not None
    assert queue.pop("oOther001") is None
    clock.advance(5)
    assert queue.pop("oFlaky001") is None


@pytest.mark.parametrize("prefix", ["", 7])
def test_a_targeted_fault_needs_a_prefix(prefix: object) -> None:
    with pytest.raises(ValueError, match="touser_prefix"):
        parse_faults({"errcode": -1, "touser_prefix": prefix})
