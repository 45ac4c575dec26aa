"""A campaign's lifecycle through real processes: it finishes with its dead, and a replay
after WeChat recovers sends each of them once, under its own id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.conftest import Stack, wait_for

TOKEN = "integration-api-token-replay"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUNT, EVERY = 1000, 10  # every tenth recipient is flaky: 10%
# The Stack's budget: a first attempt and SEND_MAX_RETRIES=4 retries, each failing.
ATTEMPTS = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No breaker: the flaky tenth alone fails, and its retries must spend the whole budget
    # instead of waiting out an open breaker.
    running = Stack(tmp_path_factory.mktemp("replay"), API_TOKENS=TOKEN, BREAKER_MIN_CALLS="0")
    with running.running():
        running.start_worker("campaigns", queue="notifier.campaigns")
        yield running


def status(stack: Stack, campaign_id: str) -> dict[str, Any]:
    response = requests.get(f"{stack.web}/v1/batches/{campaign_id}", headers=AUTH, timeout=5)
    response.raise_for_status()
    return dict(response.json())


def replay(stack: Stack, campaign_id: str) -> int:
    response = requests.post(f"{stack.web}/v1/batches/{campaign_id}/replay", headers=AUTH,
                             timeout=10)  # fmt: skip
    assert response.status_code == 202, response.text
    return int(response.json()["queued"])


def finished(stack: Stack, campaign_id: str) -> dict[str, Any] | None:
    view = status(stack, campaign_id)
    return view if view["state"] == "finished" else None


def touser(i: int) -> str:
    return f"oFlaky{i:07d}" if i % EVERY == 0 else f"oSteady{i:07d}"


def test_a_campaign_finishes_with_its_dead_and_a_replay_sends_each_once(stack: Stack) -> None:
    flaky = COUNT // EVERY
    suppressed = stack.fake("GET", "/_fake/stats").get("duplicates_suppressed", 0)
    # Transient failures for the flaky tenth that outlast the retry budget, then recovery.
    stack.fake("POST", "/_fake/faults",
               {"errcode": -1, "touser_prefix": "oFlaky", "times": flaky * ATTEMPTS})  # fmt: skip
    people = [{"touser": touser(i), "data": {"name": {"value": f"n{i}"}}} for i in range(COUNT)]
    batch = {"template_id": "TPL_REPLAY", "data": {"thing1": {"value": "Sale"}},
             "recipients": people}  # fmt: skip
    response = stack.client().post_batch(batch)
    assert response.status_code == 202, response.text
    campaign_id = response.json()["batch_id"]

    first = wait_for(lambda: finished(stack, campaign_id), 40, "the campaign to finish")
    assert {k: v for k, v in first["counts"].items() if v} == {"sent": COUNT - flaky,
                                                               "dead": flaky}  # fmt: skip
    assert first["finished_at"] and first["failures"]["total"] == flaky
    assert stack.fake("GET", "/_fake/stats")["pending_faults"] == 0  # WeChat has recovered

    assert replay(stack, campaign_id) == flaky
    assert replay(stack, campaign_id) == 0  # right after: nobody is queued twice

    def all_sent() -> dict[str, Any] | None:
        view = finished(stack, campaign_id)
        counts = view["counts"] if view else {}
        return view if counts and counts["sent"] + counts["delivered"] == COUNT else None

    done = wait_for(all_sent, 30, "every recipient sent after the replay")
    assert done["counts"]["dead"] == done["counts"]["failed"] == done["failures"]["total"] == 0
    assert done["finished_at"] >= first["finished_at"]
    delivered = [m for m in stack.delivered() if m["client_msg_id"].startswith(f"{campaign_id}-")]
    # Each recipient once, under its own id, and no follower messaged twice.
    assert Counter(m["client_msg_id"] for m in delivered).most_common(1)[0][1] == 1
    assert Counter(m["touser"] for m in delivered).most_common(1)[0][1] == 1
    assert len(delivered) == COUNT
    # Nor was a second copy ever sent for WeChat to drop.
    assert stack.fake("GET", "/_fake/stats").get("duplicates_suppressed", 0) == suppressed
    resent = next(m for m in delivered if m["client_msg_id"] == f"{campaign_id}-20")
    assert (resent["touser"], resent["data"]) == (
        "oFlaky0000020", {"thing1": {"value": "Sale"}, "name": {"value": "n20"}})  # fmt: skip
    assert replay(stack, campaign_id) == 0
