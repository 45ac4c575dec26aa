"""A campaign's state (queued, sending, finished, cancelled) and the replay of its failures."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from notifier.broker.queues import CAMPAIGNS_QUEUE
from notifier.store.campaign_lifecycle import CampaignLifecycle
from notifier.store.campaigns import CampaignStore, Outcome, Settled
from notifier.store.keys import PREFIX, campaign_key, unfinished_key
from tests.conftest import QueueView

CAMPAIGN_ID = "c" * 32
SHARED: dict[str, Any] = {"batch": CAMPAIGN_ID, "template_id": "TPL", "chunk": 0,
                          "data": {"k": {"value": "shared"}}, "url": "https://shop.example"}  # fmt: skip
OWN = {"name": {"value": "Li"}}


@pytest.fixture
def store(redis_client: redis.Redis) -> CampaignStore:
    """A campaign of 5 as admission leaves it: its record and one stored chunk."""
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), mapping={"state": "queued",
                      "template_id": "TPL", "count": 5, "chunks": 1, "created": 1.0})  # fmt: skip
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID, "chunks"), "0", "{}")
    return CampaignStore(redis_client, 3600)


def summary(store: CampaignStore) -> dict[str, Any]:
    found = store.summary(CAMPAIGN_ID)
    assert found is not None
    return found


def counts(store: CampaignStore) -> dict[str, int]:
    return {k: v for k, v in summary(store)["counts"].items() if v}


def fail_some(store: CampaignStore) -> None:
    """0 and 1 sent, 2 dead (own data), 3 dead (none), 4 failed by a send's errcode."""
    store.record_many(CAMPAIGN_ID, [
        Settled(0, Outcome("sent", 1, 101)),
        Settled(1, Outcome("sent", 1, 102)),
        Settled(2, Outcome("dead", 5, None, -1), "oDead00002", "system busy", OWN),
        Settled(3, Outcome("dead", 5, None, -1), "oDead00003", "system busy", None),
        Settled(4, Outcome("failed", 1, None, 40037), "oFail00004", "invalid template_id"),
    ], shared=SHARED)  # fmt: skip


def test_the_first_chunk_to_start_makes_a_campaign_sending(store: CampaignStore) -> None:
    assert store.begin(CAMPAIGN_ID) == (1.0, None, "sending")
    assert store.begin(CAMPAIGN_ID) == (1.0, None, "sending")
    assert store.begin("d" * 32) is None
    assert store.cancel(CAMPAIGN_ID) is False  # started: too late to cancel
    assert summary(store)["state"] == "sending"


def test_a_scheduled_campaign_counts_its_latency_from_when_it_was_queued(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), "moved", 500.0)  # as the mover does
    assert store.begin(CAMPAIGN_ID) == (500.0, None, "sending")


def test_a_cancel_before_any_chunk_starts_wins_for_good(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    assert store.cancel(CAMPAIGN_ID) is True
    assert store.cancel(CAMPAIGN_ID) is False
    assert store.begin(CAMPAIGN_ID) == (1.0, None, "cancelled")
    assert store.chunk(CAMPAIGN_ID, 0) is None  # its queued tasks find nothing to send
    assert redis_client.hget(campaign_key(PREFIX, CAMPAIGN_ID), "cancelled_at")
    assert store.replay(CAMPAIGN_ID) == 0


def test_the_step_that_makes_the_last_recipient_final_finishes_the_campaign(
    store: CampaignStore,
) -> None:
    store.begin(CAMPAIGN_ID)
    fail_some(store)
    view = summary(store)
    assert view["state"] == "finished" and view["finished_at"].endswith("Z")
    assert counts(store) == {"sent": 2, "dead": 2, "failed": 1}
    # A receipt moves a sent recipient on: the campaign stays finished, its time kept.
    store.apply_receipt(CAMPAIGN_ID, 0, "delivered", "success")
    store.apply_receipt(CAMPAIGN_ID, 1, "failed", "failed:user block")
    again = summary(store)
    assert (again["state"], again["finished_at"]) == ("finished", view["finished_at"])


def test_a_deferred_or_retrying_recipient_keeps_the_campaign_sending(
    store: CampaignStore,
) -> None:
    store.begin(CAMPAIGN_ID)
    store.record_many(CAMPAIGN_ID, [Settled(i, Outcome("sent", 1, 200 + i)) for i in range(3)])
    store.record_many(CAMPAIGN_ID, [Settled(3, Outcome("deferred", 0, None, 45009)),
                                    Settled(4, Outcome("retrying", 1, None, -1))])  # fmt: skip
    assert (summary(store)["state"], summary(store)["finished_at"]) == ("sending", None)
    store.record_many(CAMPAIGN_ID, [Settled(3, Outcome("sent", 1, 203)),
                                    Settled(4, Outcome("sent", 2, 204))])  # fmt: skip
    assert summary(store)["state"] == "finished"


def test_a_replay_queues_each_dead_recipient_once_with_its_own_data(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    store.begin(CAMPAIGN_ID)
    fail_some(store)
    assert store.replay(CAMPAIGN_ID) == 2
    view = summary(store)
    assert (view["state"], view["finished_at"]) == ("sending", None)
    assert counts(store) == {"sent": 2, "failed": 1, "queued": 2}
    # The failure list keeps only the failure not replayed; no entry shows a follower's data.
    assert [(f["id"], set(f)) for f in view["failures"]["items"]] == [
        (f"{CAMPAIGN_ID}-4", {"id", "touser", "status", "errcode", "errmsg"})
    ]
    assert store.recipient_view(CAMPAIGN_ID, 2) == {
        "id": f"{CAMPAIGN_ID}-2", "batch_id": CAMPAIGN_ID, "status": "queued", "attempts": 0
    }  # fmt: skip
    published = QueueView(redis_client, CAMPAIGNS_QUEUE).published
    assert published == [{
        "batch": CAMPAIGN_ID, "chunk": 1, "template_id": "TPL", "url": "https://shop.example",
        "data": {"k": {"value": "shared"}},
        "recipients": [[2, "oDead00002", OWN], [3, "oDead00003", None]],
    }]  # fmt: skip
    assert redis_client.zscore(unfinished_key(CAMPAIGNS_QUEUE), f"{CAMPAIGN_ID}.1") is not None
    assert redis_client.hget(campaign_key(PREFIX, CAMPAIGN_ID), "chunks") == b"2"
    # Again, at once: nobody is queued twice.
    assert store.replay(CAMPAIGN_ID) == 0
    assert len(QueueView(redis_client, CAMPAIGNS_QUEUE).tasks) == 1


def test_failed_recipients_are_replayed_only_when_asked_and_never_a_receipts_failure(
    store: CampaignStore,
) -> None:
    store.begin(CAMPAIGN_ID)
    fail_some(store)
    store.apply_receipt(CAMPAIGN_ID, 0, "failed", "failed:user block")  # the follower's choice
    assert store.replay(CAMPAIGN_ID, include_failed=True) == 3
    assert counts(store) == {"sent": 1, "failed": 1, "queued": 3}
    items = summary(store)["failures"]["items"]
    assert [(f["id"], f["errmsg"]) for f in items] == [(f"{CAMPAIGN_ID}-0", "failed:user block")]
    assert store.replay(CAMPAIGN_ID, include_failed=True) == 0


def test_a_replayed_recipient_that_ends_final_again_finishes_the_campaign_again(
    store: CampaignStore,
) -> None:
    store.begin(CAMPAIGN_ID)
    fail_some(store)
    store.replay(CAMPAIGN_ID)
    store.record_many(CAMPAIGN_ID, [Settled(2, Outcome("sent", 1, 302))], chunk=1)
    assert summary(store)["state"] == "sending"
    # Dead again: listed again, and replayable again.
    store.record_many(CAMPAIGN_ID, [Settled(3, Outcome("dead", 5, None, -1), "oDead00003",
                                            "busy", None)], chunk=1, shared=SHARED)  # fmt: skip
    assert summary(store)["state"] == "finished"
    assert counts(store) == {"sent": 3, "dead": 1, "failed": 1}
    assert store.replay(CAMPAIGN_ID) == 0  # its chunk has not ended yet
    store.finish_chunk(CAMPAIGN_ID, 1)
    assert store.replay(CAMPAIGN_ID) == 1


def test_entries_without_their_recipients_data_are_not_replayed(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    """An entry listed before failures kept their data would be resent without it."""
    store.record_many(CAMPAIGN_ID, [Settled(2, Outcome("dead", 5, None, -1), "oDead00002", "x")],
                      shared=SHARED)  # fmt: skip
    failures = campaign_key(PREFIX, CAMPAIGN_ID, "failures")
    entry = json.loads(redis_client.lindex(failures, 0) or b"")
    del entry["data"]
    redis_client.lset(failures, 0, json.dumps(entry))
    assert store.replay(CAMPAIGN_ID) == 0
    assert counts(store)["dead"] == 1


def test_a_large_replay_is_chunked_as_intake_chunks(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), "count", 250)
    dead = Outcome("dead", 5, None, -1)
    settled = [Settled(i, dead, f"oPerson{i:05d}", "busy", None) for i in range(250)]
    store.record_many(CAMPAIGN_ID, settled, shared=SHARED)
    assert store.replay(CAMPAIGN_ID) == 250
    chunks = QueueView(redis_client, CAMPAIGNS_QUEUE).published
    assert [(c["chunk"], len(c["recipients"])) for c in chunks] == [(1, 100), (2, 100), (3, 50)]
    assert sorted(r[0] for c in chunks for r in c["recipients"]) == list(range(250))


def test_an_unknown_campaign_has_nothing_to_replay(store: CampaignStore) -> None:
    assert store.replay("d" * 32) is None
    assert store.replay(CAMPAIGN_ID) == 0  # known, nothing failed


def test_a_replay_of_text_that_is_no_campaign_id_touches_nothing(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    # A key another record uses, spelled as a campaign's would be: never read or written.
    redis_client.hset(campaign_key(PREFIX, "x:other"), "chunks", "0")
    assert store.replay("x:other") is None
    assert redis_client.hgetall(campaign_key(PREFIX, "x:other")) == {b"chunks": b"0"}


def test_a_replay_that_meets_another_claiming_chunk_numbers_reads_again(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    """Between the read of `chunks` and the script, another replay took those numbers."""
    fail_some(store)
    record = campaign_key(PREFIX, CAMPAIGN_ID)
    moves = iter([lambda: redis_client.hset(record, "chunks", 7)])

    def clock() -> float:
        next(moves, lambda: 0)()
        return 1_700_000_000.0

    assert CampaignLifecycle(redis_client, 3600, clock=clock).replay(CAMPAIGN_ID) == 2
    assert [c["chunk"] for c in QueueView(redis_client, CAMPAIGNS_QUEUE).tasks] == [7]
    assert redis_client.hget(record, "chunks") == b"8"


def test_a_recipient_whose_chunk_is_still_stored_waits_for_that_chunk_to_end(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    """A chunk still retrying others reads its recipients again: it would resend them."""
    chunk = {**SHARED, "recipients": [[2, "oDead00002", OWN], [4, "oFail00004", None]]}
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID, "chunks"), "0", json.dumps(chunk))
    fail_some(store)
    assert store.replay(CAMPAIGN_ID, include_failed=True) == 1  # 3 only
    assert counts(store) == {"sent": 2, "dead": 1, "failed": 1, "queued": 1}
    store.finish_chunk(CAMPAIGN_ID, 0)
    assert store.replay(CAMPAIGN_ID, include_failed=True) == 2


def test_a_chunks_last_outcomes_end_it_in_the_same_step(
    store: CampaignStore, redis_client: redis.Redis
) -> None:
    """No reader sees the campaign finished while the chunk that finished it is still stored."""
    unfinished = unfinished_key(CAMPAIGNS_QUEUE)
    redis_client.zadd(unfinished, {f"{CAMPAIGN_ID}.0": 1.0})
    settled = [Settled(i, Outcome("sent", 1, 400 + i)) for i in range(5)]
    store.record_many(CAMPAIGN_ID, settled[:2], chunk=0, now=2.0)
    assert store.chunk(CAMPAIGN_ID, 0) is not None
    assert redis_client.zscore(unfinished, f"{CAMPAIGN_ID}.0") == 2.0
    store.record_many(CAMPAIGN_ID, settled[2:], chunk=0, now=3.0, ends=True)
    assert store.chunk(CAMPAIGN_ID, 0) is None
    assert redis_client.zscore(unfinished, f"{CAMPAIGN_ID}.0") is None
    assert summary(store)["state"] == "finished"
    store.record_many(CAMPAIGN_ID, [], chunk=0, ends=True)  # nothing left to write: ends alone
