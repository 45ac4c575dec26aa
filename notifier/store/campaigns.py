"""Campaign state in Redis, kept compact: one hash per campaign, a few bytes per recipient outcome.

A queued recipient costs nothing here; it lives only inside its chunk's task. Once
it has an outcome, it takes one short hash field, and the campaign's counters move.
A campaign's state moves `queued` -> `sending` (its first chunk starts) -> `finished`
(every recipient sent, delivered, failed or dead; a deferred one is not final), or
`queued` -> `cancelled`; a replay of its failures makes it `sending` again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from notifier.broker.queues import CAMPAIGNS_QUEUE, SHARED_FIELDS
from notifier.store.campaign_ids import recipient_id
from notifier.store.campaign_lifecycle import CampaignLifecycle
from notifier.store.keys import PREFIX, campaign_key, msgid_key, unfinished_key
from notifier.store.messages import FINAL, early_receipt
from notifier.store.metrics import Tally, metrics_keys
from notifier.store.record import iso
from notifier.store.replies import maybe_text, text
from notifier.store.scripts import source
from notifier.store.unfinished import chunk_member

COUNTED = ("retrying", "sent", "delivered", "failed", "dead", "deferred")
# What a recipient not yet started shows while its campaign waits or after it is cancelled.
UNSTARTED = {"scheduled": "scheduled", "cancelled": "cancelled"}


@dataclass(frozen=True)
class Outcome:
    """A recipient's latest outcome, as stored in one hash field."""

    status: str
    attempts: int
    msgid: int | None = None
    errcode: int | None = None

    def encode(self) -> str:
        return f"{self.status}|{self.attempts}|{self.msgid or ''}|{self.errcode or ''}"

    @classmethod
    def decode(cls, raw: str) -> Outcome:
        status, attempts, msgid, errcode = raw.split("|")
        return cls(
            status, int(attempts), int(msgid) if msgid else None, int(errcode) if errcode else None
        )


@dataclass(frozen=True)
class Settled:
    """One recipient's outcome, waiting to be written with others of its chunk."""

    index: int
    outcome: Outcome
    touser: str = ""
    errmsg: str = ""
    data: dict[str, Any] | None = None  # the recipient's own data, kept if it fails


class CampaignStore:
    """Reads and writes campaigns, their counters and their recipients' outcomes."""

    def __init__(
        self,
        client: redis.Redis,
        retention: int,
        prefix: str = PREFIX,
    ) -> None:
        self._redis = client
        self._retention = retention
        self._prefix = prefix
        self._set_many = client.register_script(source("set_outcomes"))
        self._lifecycle = CampaignLifecycle(client, retention, prefix)
        self.unfinished = unfinished_key(CAMPAIGNS_QUEUE)

    def chunk(self, campaign_id: str, number: int) -> dict[str, Any] | None:
        """A chunk's stored recipients and shared fields; None once it has finished."""
        raw = self._redis.hget(campaign_key(self._prefix, campaign_id, "chunks"), str(number))
        return json.loads(raw) if raw else None

    def seen(self, campaign_id: str, number: int, now: float) -> None:
        """Mark a chunk seen by a worker, so the reconciler leaves it alone."""
        self._redis.zadd(
            self.unfinished, {chunk_member(campaign_id, number): round(now, 3)}, xx=True
        )

    def finish_chunk(self, campaign_id: str, number: int, keep: bool = False) -> None:
        """A chunk left the queues: every recipient final, or parked as deferred (`keep`)."""
        pipe = self._redis.pipeline()
        pipe.zrem(self.unfinished, chunk_member(campaign_id, number))
        if not keep:
            pipe.hdel(campaign_key(self._prefix, campaign_id, "chunks"), str(number))
        pipe.execute()

    def state(self, campaign_id: str) -> str | None:
        """The campaign's state, or None when it is unknown (or expired)."""
        return maybe_text(self._redis.hget(self._key(campaign_id), "state"))

    def admission(self, campaign_id: str) -> tuple[float, str | None] | None:
        """When the campaign was admitted (its 202) and the trace id of that request, in one
        read, as each chunk needs both; None when it is unknown (or expired)."""
        created, trace = self._redis.hmget(self._key(campaign_id), ["created", "trace"])
        if created is None:
            return None
        return float(created), maybe_text(trace) or None

    def begin(self, campaign_id: str) -> tuple[float, str | None, str] | None:
        """(admitted, trace, state) for a starting chunk; `queued` becomes `sending`."""
        return self._lifecycle.begin(campaign_id)

    def cancel(self, campaign_id: str) -> bool:
        """Cancel the campaign if still `queued` (CampaignLifecycle.cancel says how)."""
        return self._lifecycle.cancel(campaign_id)

    def replay(self, campaign_id: str, include_failed: bool = False) -> int | None:
        """Queue dead (and failed) recipients again: how many; None for an unknown one."""
        return self._lifecycle.replay(campaign_id, include_failed)

    def final_indexes(self, campaign_id: str, indexes: Iterable[int]) -> set[int]:
        """Those of `indexes` whose recipients reached a final state (never to be resent)."""
        wanted = list(indexes)
        if not wanted:
            return set()
        raw = self._redis.hmget(self._outcomes(campaign_id), [str(i) for i in wanted])
        return {
            index
            for index, value in zip(wanted, raw, strict=True)
            if value is not None and text(value).split("|", 1)[0] in FINAL
        }

    def record(
        self, campaign_id: str, index: int, outcome: Outcome, touser: str = "", errmsg: str = ""
    ) -> None:
        """Store a recipient's outcome; failures also go on the campaign's failure list."""
        self.record_many(campaign_id, [Settled(index, outcome, touser, errmsg)])

    def record_many(
        self, campaign_id: str, settled: list[Settled], chunk: int | None = None, now: float = 0.0,
        tally: Tally | None = None, shared: Mapping[str, Any] | None = None, ends: bool = False,
    ) -> None:  # fmt: skip
        """Store the outcomes of several recipients of a campaign in one round trip.

        `chunk`, the number of the chunk being sent, is marked seen at `now` (the time a
        last outcome finishes the campaign too) as well, and what `tally` gathered
        meanwhile is written with the outcomes. `shared`, the chunk being sent, gives the
        fields a failure's replay needs, kept once in the record with the first failure.
        With `ends` the chunk ends (finish_chunk) in the same step as its last outcomes.
        """
        if not settled:
            if ends and chunk is not None:
                self.finish_chunk(campaign_id, chunk)
            return
        keys = [self._key(campaign_id), self._outcomes(campaign_id), self._failures(campaign_id),
                self.unfinished, campaign_key(self._prefix, campaign_id, "chunks"),
                *metrics_keys(self._prefix)]  # fmt: skip
        member = chunk_member(campaign_id, chunk) if chunk is not None else ""
        fields = ""
        if shared is not None and any(i.outcome.status in ("failed", "dead") for i in settled):
            kept = {k: shared[k] for k in SHARED_FIELDS if k in shared}
            fields = json.dumps(kept, separators=(",", ":"), ensure_ascii=False)
        args: list[str | int | float] = [self._retention, member, round(now or time.time(), 3),
                                         fields, "1" if ends else "",
                                         *(tally or Tally()).lua_args()]  # fmt: skip
        for item in settled:
            outcome, msgid_at, rid, early_at = item.outcome, 0, "", 0
            if outcome.status == "sent" and outcome.msgid is not None:
                keys.append(msgid_key(self._prefix, outcome.msgid))
                msgid_at, rid = len(keys), recipient_id(campaign_id, item.index)
                keys.append(msgid_key(self._prefix, outcome.msgid, "early_receipt"))
                early_at = len(keys)
            failure = self._failure(campaign_id, item)
            args += [str(item.index), outcome.encode(), failure, msgid_at, rid, early_at]
        early = self._set_many(keys=keys, args=args)
        for field, receipt in zip(early[::2], early[1::2], strict=True):
            # WeChat's receipt outran our own bookkeeping; apply it now.
            self.apply_receipt(campaign_id, int(field), *early_receipt(receipt))

    def _failure(self, campaign_id: str, item: Settled) -> str:
        """The failure list's entry for a failed or dead recipient; '' for any other."""
        if item.outcome.status not in ("failed", "dead"):
            return ""
        entry = {
            "id": recipient_id(campaign_id, item.index),
            "touser": item.touser,
            "status": item.outcome.status,
            "errcode": item.outcome.errcode,
            "errmsg": item.errmsg,
            "data": item.data,  # the key itself marks an entry a replay can resend
        }
        return json.dumps(entry, ensure_ascii=False)

    def apply_receipt(self, campaign_id: str, index: int, status: str, reason: str) -> bool:
        """Move a sent recipient to delivered or failed; repeated receipts change nothing."""
        current = self.outcome(campaign_id, index)
        if current is None or current.status != "sent":
            return False
        outcome = Outcome(status, current.attempts, current.msgid, None)
        self.record(campaign_id, index, outcome, "", reason)
        return True

    def count(self, campaign_id: str) -> int | None:
        """How many recipients the campaign has, or None when it is unknown."""
        value = self._redis.hget(self._key(campaign_id), "count")
        return int(value) if value is not None else None

    def recipient_view(self, campaign_id: str, index: int) -> dict[str, Any] | None:
        """The status API's view of one recipient, or None when there is no such recipient."""
        count, state = self._redis.hmget(self._key(campaign_id), "count", "state")
        if count is None or not 0 <= index < int(count):
            return None
        view: dict[str, Any] = {"id": recipient_id(campaign_id, index), "batch_id": campaign_id}
        view.update(status=UNSTARTED.get(maybe_text(state) or "", "queued"), attempts=0)
        outcome = self.outcome(campaign_id, index)
        if outcome is not None:
            view.update(status=outcome.status, attempts=outcome.attempts)
            if outcome.msgid is not None:
                view["msgid"] = outcome.msgid
            if outcome.errcode is not None:
                view["errcode"] = outcome.errcode
        return view

    def outcome(self, campaign_id: str, index: int) -> Outcome | None:
        """One recipient's outcome; None while it is still queued (or unknown)."""
        raw = self._redis.hget(self._outcomes(campaign_id), str(index))
        return Outcome.decode(text(raw)) if raw else None

    def summary(self, campaign_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any] | None:
        """Counts per status and a page of failed recipients, for the campaign status API."""
        pipe = self._redis.pipeline()
        pipe.hgetall(self._key(campaign_id))
        pipe.lrange(self._failures(campaign_id), offset, offset + max(limit, 1) - 1)
        pipe.llen(self._failures(campaign_id))
        raw, failures, failed_total = pipe.execute()
        if not raw:
            return None
        meta = {text(k): text(v) for k, v in raw.items()}
        count = int(meta["count"])
        counts = {status: int(meta.get(f"n:{status}", 0)) for status in COUNTED}
        waiting, state = count - sum(counts.values()), meta["state"]
        # Recipients not started: queued, or all waiting for the send_at, or all cancelled.
        counts = {"queued": 0 if state in UNSTARTED else waiting, **counts}
        if state in UNSTARTED:
            counts[UNSTARTED[state]] = waiting
        finished = meta.get("finished_at")
        return {
            "id": campaign_id,
            "state": state,
            "template_id": meta["template_id"],
            "count": count,
            "created": iso(float(meta["created"])),
            **({"send_at": meta["send_at"]} if "send_at" in meta else {}),
            "finished_at": iso(float(finished)) if finished else None,
            "counts": counts,
            "failures": {
                "total": failed_total,
                "offset": offset,
                # A recipient's own data is kept for a replay, not shown.
                "items": [_without(json.loads(f), "data") for f in failures],
            },
        }

    def _key(self, campaign_id: str) -> str:
        return campaign_key(self._prefix, campaign_id)

    def _outcomes(self, campaign_id: str) -> str:
        return campaign_key(self._prefix, campaign_id, "outcomes")

    def _failures(self, campaign_id: str) -> str:
        return campaign_key(self._prefix, campaign_id, "failures")


def _without(entry: dict[str, Any], field: str) -> dict[str, Any]:
    entry.pop(field, None)
    return entry
