"""Scheduled sends with real processes: on time, each once, through a kill and a Redis restart.

200 messages and a 5,000-recipient campaign are scheduled 20 s ahead; while they wait,
every worker is SIGKILLed and Redis restarted (append-only file on). Each arrives at the
fake WeChat no earlier than its send_at, and once; the mover puts each on its queue
within 1 s of its send_at (the 99th percentile, read from the records); a cancelled
message and a cancelled campaign never arrive.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests

from notifier.client import template_message
from notifier.store.keys import PREFIX, campaign_key, message_key
from tests.integration.conftest import Stack, wait_for

BEARER = "scheduled-bearer-token-0123456789"
AHEAD = 20
MESSAGES = 200
RECIPIENTS = 5000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("scheduled"), API_TOKENS=BEARER)
    with running.running():
        running.start_worker("campaigns", queue="notifier.campaigns")
        yield running


def rfc3339(at: float) -> str:
    """`at` as Beijing time, as a business system there would write it."""
    moment = datetime.fromtimestamp(at, tz=UTC).astimezone(timezone(timedelta(hours=8)))
    return moment.isoformat(timespec="seconds")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def cancel(stack: Stack, path: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {BEARER}"}
    return requests.delete(f"{stack.web}{path}", headers=headers, timeout=10)


def schedule(stack: Stack, send_at: str) -> tuple[list[str], str, str, str]:
    """Post the messages, the campaign, and one of each to cancel; return their ids."""

    def one(i: int) -> str:
        message = template_message(f"oLater{i:06d}", "TPL_LATER", {"thing1": "soon"})
        response = stack.client().post_message({**message, "send_at": send_at})
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "scheduled"
        return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(MESSAGES + 1)))

    def batch(count: int, name: str) -> str:
        people = [{"touser": f"o{name}{i:06d}"} for i in range(count)]
        body = {"template_id": "TPL_LATER", "data": {"thing1": {"value": "sale"}},
                "recipients": people, "send_at": send_at}  # fmt: skip
        response = stack.client().post_batch(body)
        assert response.status_code == 202, response.text
        return str(response.json()["batch_id"])

    return ids[:MESSAGES], ids[MESSAGES], batch(RECIPIENTS, "Bulk"), batch(300, "Dropped")


@pytest.mark.long
def test_scheduled_work_arrives_on_time_and_once_through_a_kill_and_a_redis_restart(
    stack: Stack,
) -> None:
    due = math.ceil(time.time()) + AHEAD
    ids, dropped, campaign_id, dropped_campaign = schedule(stack, rfc3339(due))
    for path, answer in ((f"/v1/messages/{dropped}", {"id": dropped, "status": "cancelled"}),
                         (f"/v1/batches/{dropped_campaign}",
                          {"id": dropped_campaign, "state": "cancelled"})):  # fmt: skip
        response = cancel(stack, path)
        assert response.status_code == 200 and response.json() == answer, response.text
    assert stack.status(ids[0]) == "scheduled"
    assert stack.field(campaign_key(PREFIX, campaign_id), "state") == "scheduled"

    # While they wait: every worker (so every mover) killed, Redis restarted, workers back.
    stack.processes["worker"].stop(kill=True)
    stack.processes["campaigns"].stop(kill=True)
    stack.restart_redis()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda args: stack.start_worker(*args),
                      [("worker", "notifier.messages"), ("campaigns", "notifier.campaigns")]))  # fmt: skip
    assert time.time() < due - 1, "the test's setup outlasted the wait; raise AHEAD"
    assert stack.status(ids[0]) == "scheduled" and not stack.delivered()

    people = [f"{campaign_id}-{i}" for i in range(RECIPIENTS)]
    wait_for(lambda: time.time() > due, AHEAD + 5, "the send_at")
    counts = stack.wait_delivered(ids + people, timeout=AHEAD + 60)
    assert set(counts.values()) == {1}, {i: n for i, n in counts.items() if n != 1}
    arrived = {m["client_msg_id"]: m["received_at"] for m in stack.delivered()}
    early = {i: due - arrived[i] for i in ids + people if arrived[i] < due}
    assert not early, f"arrived before send_at: {list(early.items())[:5]}"

    # The mover's lateness, from the records: a message's `queued` entry, a campaign's move.
    client = stack.redis_client()
    try:
        moved = [
            json.loads(client.lindex(message_key(PREFIX, i, "history"), 1) or b"{}")["at"] - due
            for i in ids
        ]
        moved.append(float(client.hget(campaign_key(PREFIX, campaign_id), "moved") or 0) - due)
    finally:
        client.close()
    assert min(moved) >= 0 and percentile(moved, 0.99) < 1.0, sorted(moved)[-5:]
    singles = [arrived[i] - due for i in ids]
    bulk = [arrived[i] - due for i in people]
    print(f"\nmoved late p50 {percentile(moved, .5):.3f} s, p99 {percentile(moved, .99):.3f} s, "
          f"max {max(moved):.3f} s; arrived after send_at: messages p50 "
          f"{percentile(singles, .5):.3f} p99 {percentile(singles, .99):.3f} s, campaign p50 "
          f"{percentile(bulk, .5):.3f} p99 {percentile(bulk, .99):.3f} s")  # fmt: skip
    # A campaign's 5,000 take as long as the campaign worker's rate needs; it starts on time.
    assert percentile(singles, 0.99) < 1.0 and min(bulk) < 1.0

    # Nothing of what was cancelled ever arrives: sentinels queued after it, one on each
    # queue, arrive first.
    sentinel = stack.client().post_message(template_message("oSentinel1", "TPL_LATER", {"a": "b"}))
    data = {"a": {"value": "b"}}
    lone = {"template_id": "TPL_LATER", "data": data, "recipients": [{"touser": "oSentinel2"}]}
    sentinel_batch = stack.client().post_batch(lone)
    assert sentinel.status_code == sentinel_batch.status_code == 202
    stack.wait_delivered([sentinel.json()["id"], f"{sentinel_batch.json()['batch_id']}-0"], 30)
    to = Counter(m["touser"][:8] for m in stack.delivered())
    assert stack.deliveries_of([dropped]) == {dropped: 0} and to["oDropped"] == 0
    assert stack.status(dropped) == "cancelled"
    assert stack.field(campaign_key(PREFIX, dropped_campaign), "state") == "cancelled"
