"""Posted to delivered through real processes, counted at the fake WeChat."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from notifier.client import template_message
from tests.integration.conftest import Stack, wait_for


def test_posted_messages_are_delivered_once_each(stack: Stack) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: stack.post(thing1=f"order {i}"), range(40)))
    counts = stack.wait_delivered(ids)
    assert set(counts.values()) == {1}
    wait_for(lambda: all(stack.status(i) == "sent" for i in ids), what="status sent")
    delivered = {m["client_msg_id"]: m for m in stack.delivered()}
    assert delivered[ids[3]]["data"] == {"thing1": {"value": "order 3"}}


def test_an_invalidated_token_is_recovered_with_one_refresh(stack: Stack) -> None:
    stack.wait_delivered([stack.post()])
    before = stack.fake("GET", "/_fake/stats")
    stack.fake("POST", "/_fake/invalidate-token")
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: stack.post(), range(30)))
    counts = stack.wait_delivered(ids)
    assert set(counts.values()) == {1}
    after = stack.fake("GET", "/_fake/stats")
    assert after["tokens_issued"] - before["tokens_issued"] == 1
    assert after["errors_by_code"].get("40001", 0) >= 1


def test_a_busy_wechat_is_retried_and_the_message_delivered_once(stack: Stack) -> None:
    stack.fake(
        "POST", "/_fake/faults", [{"errcode": -1, "times": 2}, {"http_status": 500, "times": 2}]
    )
    message_id = stack.post(touser="oBusyFollower01")
    assert stack.wait_delivered([message_id]) == {message_id: 1}
    wait_for(lambda: stack.status(message_id) == "sent", what="status sent")


def test_a_send_that_timed_out_but_landed_is_not_shown_twice(stack: Stack) -> None:
    # WeChat takes the message but answers after the worker's 1 s read timeout:
    # the retry carries the same client_msg_id, so the follower sees it once.
    before = stack.fake("GET", "/_fake/stats")
    stack.fake("POST", "/_fake/faults", {"delay_ms": 1500})
    message_id = stack.post(touser="oSlowFollower01")
    wait_for(lambda: stack.status(message_id) == "sent", what="status sent")
    # The slow first call may finish after the retry did: wait for both to be counted.
    wait_for(
        lambda: (
            stack.fake("GET", "/_fake/stats")["duplicates_suppressed"]
            > before["duplicates_suppressed"]
        ),
        what="the second copy to reach the fake",
    )
    assert stack.deliveries_of([message_id]) == {message_id: 1}


@pytest.mark.parametrize(
    ("touser", "errcode"), [("blockedFollower1", 43019), ("unfollowedUser1", 43004)]
)
def test_a_permanent_error_is_one_attempt(stack: Stack, touser: str, errcode: int) -> None:
    before = stack.fake("GET", "/_fake/stats")["errors_by_code"].get(str(errcode), 0)
    message_id = stack.post(touser=touser)
    wait_for(lambda: stack.status(message_id) == "failed", what="status failed")
    # A sentinel sent after it has been through the same worker; a retry would now be
    # waiting, held by the worker under kombu's unacknowledged records, or queued.
    stack.wait_delivered([stack.post(touser="oSentinelUser01")])
    assert not stack.tasks_of(message_id), "a retry of a permanent failure is waiting"
    after = stack.fake("GET", "/_fake/stats")["errors_by_code"].get(str(errcode), 0)
    assert after - before == 1
    assert stack.deliveries_of([message_id]) == {message_id: 0}


def test_a_body_refused_as_too_long_leaves_the_connection_usable(stack: Stack) -> None:
    client = stack.client()  # one session: the second request reuses the connection
    too_long = template_message("oLongFollower1", "TPL_IT", {"thing1": "x" * 70_000})
    assert client.post_message(too_long).status_code == 413
    after = client.post_message(template_message("oLongFollower1", "TPL_IT", {"thing1": "ok"}))
    assert after.status_code == 202, after.text
