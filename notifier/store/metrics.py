"""The fleet's metrics in Redis: what each field means, how senders add to it, how scrapes read it.

Counters and histograms live in Redis, not in a process, so any web process answers a
scrape for the whole fleet. They are written by the Lua scripts and pipelines that
already record each message, so counting costs no round trip of its own:

    counters hash (metrics_key(prefix, "counters")), one field per series:
      accepted:single, accepted:campaign   admit_message.lua, admit_campaign.lua
      refused:<reason>                     the web's intake views (add())
      sent                                 record_sent.lua, set_outcomes.lua
      failed:<errcode>, dead               MessageState._park, set_outcomes.lua
      retries                              MessageState.record_retrying, set_outcomes.lua
      token_refreshes                      TokenStore

    one hash per histogram: field <upper bound> (non-cumulative count) and `sum`, written
    from a Tally the sender filled while it worked.

The Lua scripts spell the counter fields too; this docstring is their one list. Nothing
here expires: a counter that restarts from zero (Redis lost its data) is a counter reset
to Prometheus, which rate() already handles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from notifier.broker.envelopes import queued_at
from notifier.store.keys import PREFIX, MetricsKind, account_key, metrics_key
from notifier.store.replies import text

# A histogram's buckets as a scrape shows them: (upper bound, cumulative count), +Inf last.
Buckets = list[tuple[str, int]]
COUNTERS = 0  # a Tally entry's offset for the counters hash, in metrics_keys() order
SUM = "sum"
INF = "+Inf"


@dataclass(frozen=True)
class Histogram:
    """A histogram's hash, its place among metrics_keys(), and its buckets' upper bounds."""

    kind: MetricsKind
    offset: int
    bounds: tuple[float, ...]

    def field(self, seconds: float) -> str:
        """The field of the bucket `seconds` falls in: the lowest bound not below it."""
        for bound in self.bounds:
            if seconds <= bound:
                return f"{bound:g}"
        return INF


# 202 to WeChat's answer: from well under a second to a backlog of minutes.
SEND_LATENCY = Histogram("send_latency", 1, (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                                             300, 600))  # fmt: skip
# One HTTP call to WeChat: milliseconds when well, up to the read timeout when not.
WECHAT_REQUEST = Histogram("wechat_request", 2, (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                                 10))  # fmt: skip
HISTOGRAMS = (SEND_LATENCY, WECHAT_REQUEST)


def metrics_keys(prefix: str = PREFIX) -> list[str]:
    """The metrics hashes in the order a script's KEYS carry them: counters, then histograms."""
    return [metrics_key(prefix, "counters"), *(metrics_key(prefix, h.kind) for h in HISTOGRAMS)]


class Tally:
    """What a sender measured during an attempt or a chunk, written with its outcome.

    Entries add up until taken: each is written exactly once, by the next record call.
    """

    def __init__(self, admitted: float | None = None) -> None:
        self._entries: dict[tuple[int, str], float] = {}
        # When the message (or campaign) was admitted, the 202: send latency counts from it.
        self.admitted = admitted

    def sent(self, now: float) -> None:
        """WeChat accepted a send at `now`: one send latency, if the admission time is known."""
        if self.admitted is not None:
            self.observe(SEND_LATENCY, now - self.admitted)

    def observe(self, histogram: Histogram, seconds: float) -> None:
        """One observation: its bucket's count and the histogram's sum."""
        seconds = max(0.0, seconds)
        self._add(histogram.offset, histogram.field(seconds), 1)
        self._add(histogram.offset, SUM, seconds)

    def count(self, field: str, amount: int = 1) -> None:
        """Add to a counter (see the fields above)."""
        self._add(COUNTERS, field, amount)

    def lua_args(self) -> list[Any]:
        """The entries as lua/tally.lua reads them (a count, then offset, field, amount each),
        and forget them."""
        entries, self._entries = self._entries, {}
        args: list[Any] = [len(entries)]
        for (offset, field), amount in entries.items():
            args += [offset, field, _amount(amount)]
        return args

    def write(self, pipe: Any, prefix: str = PREFIX) -> None:
        """Queue the entries on a pipeline the caller executes anyway, and forget them."""
        keys = metrics_keys(prefix)
        entries, self._entries = self._entries, {}
        for (offset, field), amount in entries.items():
            if field == SUM:
                pipe.hincrbyfloat(keys[offset], field, amount)
            else:
                pipe.hincrby(keys[offset], field, int(amount))

    def _add(self, offset: int, field: str, amount: float) -> None:
        self._entries[offset, field] = self._entries.get((offset, field), 0) + amount


def _amount(amount: float) -> str:
    """An amount as Lua's tally() passes it on: whole numbers for HINCRBY, else a float."""
    return str(int(amount)) if float(amount).is_integer() else repr(float(amount))


@dataclass(frozen=True)
class Snapshot:
    """The metrics as one scrape reads them, in one round trip."""

    counters: dict[str, int]
    histograms: dict[str, tuple[Buckets, float]]  # per histogram: its buckets and its sum
    # Per queue: its depth, and how long its head has waited (0 when empty).
    queues: dict[str, tuple[int, float]]
    quota_paused: bool | None  # None: no WECHAT_APP_ID, so no account to ask about
    # Open or half-open (notifier/store/breaker.py): ordinary sends are held back.
    circuit_open: bool | None


class MetricsStore:
    """Reads the fleet's metrics for a scrape, and adds what the web counts itself."""

    def __init__(
        self,
        client: redis.Redis,
        queues: Iterable[str],
        app_id: str = "",
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._queues = tuple(queues)
        self._keys = metrics_keys(prefix)
        self._account = (
            (account_key(prefix, app_id, "quota"), account_key(prefix, app_id, "breaker"))
            if app_id
            else None
        )
        self._clock = clock

    def add(self, counts: Mapping[str, int]) -> None:
        """Add to counters in one round trip (the web's refusals, which no script records)."""
        pipe = self._redis.pipeline(transaction=False)
        for field, amount in counts.items():
            pipe.hincrby(self._keys[COUNTERS], field, amount)
        pipe.execute()

    def read(self) -> Snapshot:
        """Every counter, histogram, queue and pause, read in one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for key in self._keys:
            pipe.hgetall(key)
        for queue in self._queues:
            pipe.llen(queue)
            pipe.lindex(queue, -1)  # the head: the end workers take from (UnfinishedWork.head)
        if self._account is not None:
            pipe.exists(self._account[0])
            pipe.hget(self._account[1], "state")
        replies = pipe.execute()
        now = self._clock()
        counters = {text(k): int(v) for k, v in replies[COUNTERS].items()}
        histograms = {str(h.kind): _cumulative(h, replies[h.offset]) for h in HISTOGRAMS}
        queues: dict[str, tuple[int, float]] = {}
        for number, queue in enumerate(self._queues):
            depth, head = replies[len(self._keys) + 2 * number : len(self._keys) + 2 * number + 2]
            stamp = queued_at(head) if head else None
            queues[queue] = (int(depth), max(0.0, now - stamp) if stamp is not None else 0.0)
        if self._account is None:
            return Snapshot(counters, histograms, queues, None, None)
        return Snapshot(counters, histograms, queues, bool(replies[-2]), replies[-1] == b"open")


def _cumulative(histogram: Histogram, raw: Mapping[bytes, bytes]) -> tuple[Buckets, float]:
    """Stored buckets made cumulative over today's bounds; a field no longer a bound (the
    bounds changed) counts in the next bound above it, so counts never go backwards."""
    stored = {text(k): float(v) for k, v in raw.items()}
    total = stored.pop(SUM, 0.0)
    by_bound = sorted((float(field), int(count)) for field, count in stored.items())
    buckets, running, position = [], 0, 0
    for bound in (*histogram.bounds, float("inf")):
        while position < len(by_bound) and by_bound[position][0] <= bound:
            running += by_bound[position][1]
            position += 1
        buckets.append((f"{bound:g}" if bound != float("inf") else INF, running))
    return buckets, total
