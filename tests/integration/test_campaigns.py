"""Campaigns through real processes: chunked sending, per-recipient outcomes, queue isolation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from notifier.store.keys import PREFIX, campaign_key
from tests.integration.conftest import Stack, wait_for

TOKEN = "integration-api-token-0001"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("campaigns"), API_TOKENS=TOKEN)
    with running.running():
        running.start_worker("campaigns", queue="notifier.campaigns")
        yield running


def post_batch(stack: Stack, batch: dict[str, Any]) -> requests.Response:
    return stack.client().post_batch(batch)


def batch_status(stack: Stack, campaign_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{stack.web}/v1/batches/{campaign_id}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return dict(response.json())


def recipients(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"touser": f"o{prefix}{i:07d}", "data": {"name": {"value": f"n{i}"}}} for i in range(count)
    ]


def test_a_campaign_reaches_every_recipient_once_with_outcomes(stack: Stack) -> None:
    people = recipients(250, "Camp")
    people[7]["touser"] = "blockedCampaign07"
    people[123]["touser"] = "unfollowedCamp123"
    batch = {"template_id": "TPL_SALE", "data": {"thing1": {"value": "Sale"}}, "recipients": people}
    response = post_batch(stack, batch)
    assert response.status_code == 202, response.text
    answer = response.json()
    campaign_id = answer["batch_id"]
    assert answer["count"] == 250
    wait_for(
        lambda: batch_status(stack, campaign_id)["counts"]["queued"] == 0, 60, "the batch to drain"
    )
    summary = batch_status(stack, campaign_id)
    assert summary["counts"]["sent"] == 248
    assert summary["counts"]["failed"] == 2
    assert {f["id"] for f in summary["failures"]["items"]} == {
        f"{campaign_id}-7",
        f"{campaign_id}-123",
    }
    delivered = [m for m in stack.delivered() if m["client_msg_id"].startswith(campaign_id)]
    ids = [m["client_msg_id"] for m in delivered]
    assert len(ids) == len(set(ids)) == 248
    sample = next(m for m in delivered if m["client_msg_id"] == f"{campaign_id}-42")
    assert sample["data"] == {"thing1": {"value": "Sale"}, "name": {"value": "n42"}}
    one = requests.get(f"{stack.web}/v1/messages/{campaign_id}-42",
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()  # fmt: skip
    assert one["status"] == "sent" and one["msgid"]


def test_a_chunk_retries_only_its_failures(stack: Stack) -> None:
    before = stack.fake("GET", "/_fake/stats")
    stack.fake(
        "POST", "/_fake/faults", [{"errcode": -1, "times": 5}, {"http_status": 500, "times": 5}]
    )
    response = post_batch(
        stack, {"template_id": "TPL_RETRY", "recipients": recipients(60, "Retry")}
    )
    campaign_id = response.json()["batch_id"]
    wait_for(lambda: batch_status(stack, campaign_id)["counts"]["sent"] == 60, 60, "all 60 sent")
    after = stack.fake("GET", "/_fake/stats")
    # 60 deliveries and 10 faults: nothing already sent was sent again.
    assert after["send_calls"] - before["send_calls"] == 70
    ids = [
        m["client_msg_id"] for m in stack.delivered() if m["client_msg_id"].startswith(campaign_id)
    ]
    assert len(ids) == len(set(ids)) == 60


def test_a_single_message_is_not_held_up_by_a_draining_campaign(stack: Stack) -> None:
    stack.processes["campaigns"].stop()  # the campaign queue fills up with nobody draining it
    try:
        response = post_batch(
            stack, {"template_id": "TPL_BIG", "recipients": recipients(3000, "Big")}
        )
        assert response.status_code == 202
        client = stack.redis_client()
        chunks = client.llen("notifier.campaigns")
        message_id = stack.post(touser="oUrgentFollower1")
        stack.wait_delivered([message_id], timeout=10)
        # Delivered while every chunk of the campaign still waits: it queued behind none.
        assert client.llen("notifier.campaigns") == chunks >= 30
        client.close()
    finally:
        stack.start_worker("campaigns", queue="notifier.campaigns")


def test_a_bad_recipient_is_named_by_index_and_nothing_is_queued(stack: Stack) -> None:
    people = recipients(5, "Bad")
    people[3]["touser"] = "not valid!"
    client = stack.redis_client()
    try:
        response = post_batch(stack, {"template_id": "TPL_BAD", "recipients": people})
        assert response.status_code == 400
        assert response.headers["Content-Type"] == "application/problem+json"
        assert list(response.json()["errors"]["recipients"]) == ["3"]
        # The 400 leaves before admission: no campaign of that template was recorded, so
        # nothing of it is queued (a campaign's chunks and record are written together).
        recorded = [key for key in client.scan_iter(campaign_key(PREFIX, "*"))
                    if client.type(key) == b"hash"
                    and client.hget(key, "template_id") == b"TPL_BAD"]  # fmt: skip
        assert recorded == []
    finally:
        client.close()
