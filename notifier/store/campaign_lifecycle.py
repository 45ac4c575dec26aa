"""A campaign's state changes outside its outcomes: a chunk starts, a cancel, a replay.

The state moves `queued` -> `sending` when its first chunk starts (begin), then to
`finished` in the step that makes its last recipient final (lua/set_outcomes.lua), or
`queued` -> `cancelled` (cancel). A replay of its failures makes it `sending` again:
each failure entry keeps its recipient's own data, and the record the shared fields, so a
failed recipient is sent again as it was first sent, under its own recipient id, which
is also its client_msg_id, so WeChat shows a resend once. One Lua script
(lua/replay_campaign.lua) picks them, stores them as new chunks, queues those by intake's
own push and clears their outcomes, in one step: a replay run twice, or two at once,
queues nobody twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import redis

from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_SIZE
from notifier.errors import NotifierError
from notifier.store.campaign_ids import is_campaign_id
from notifier.store.keys import PREFIX, campaign_key
from notifier.store.replies import maybe_text, text
from notifier.store.scripts import source
from notifier.store.unfinished import PUSH_LIMITS, chunk_envelope, chunk_member, queue_keys

# Chunk numbers are read, then claimed in the script; another replay between the two
# makes the script refuse, and the read is made again.
ATTEMPTS = 5


class ReplayContended(NotifierError):
    """Raised when other replays of the same campaign kept moving its chunk numbers."""


class CampaignLifecycle:
    """Moves a campaign's state where its outcomes do not: start, cancel, replay."""

    def __init__(
        self,
        client: redis.Redis,
        retention: int,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._retention = retention
        self._prefix = prefix
        self._clock = clock
        self._begin = client.register_script(source("begin_campaign"))
        self._cancel = client.register_script(source("cancel_campaign"))
        self._replay = client.register_script(source("replay_campaign"))

    def begin(self, campaign_id: str) -> tuple[float, str | None, str] | None:
        """What a starting chunk needs (queued when, the trace id, the state), in one step
        that moves a `queued` campaign to `sending`; None when it is unknown (or expired).

        A chunk whose campaign is `cancelled` must send nobody: the cancel won the race.
        """
        found = self._begin(keys=[campaign_key(self._prefix, campaign_id)])
        if not found:
            return None
        created, trace, state = found
        return float(created), maybe_text(trace) or None, text(state)

    def cancel(self, campaign_id: str) -> bool:
        """Cancel a campaign none of whose chunks has started; False for any other.

        Only a `queued` campaign becomes `cancelled` (with `cancelled_at`); its stored
        recipients go, so its queued chunk tasks find nothing to send. Atomic with a
        chunk's start (begin): exactly one of the two wins. A `scheduled` campaign is
        cancelled by the schedule's own cancel (lua/cancel_scheduled.lua), which also
        takes it out of the schedule.
        """
        keys = [campaign_key(self._prefix, campaign_id),
                campaign_key(self._prefix, campaign_id, "chunks")]  # fmt: skip
        return bool(self._cancel(keys=keys, args=[round(self._clock(), 3)]))

    def replay(self, campaign_id: str, include_failed: bool = False) -> int | None:
        """Queue the campaign's dead recipients (and failed ones, with `include_failed`)
        again; return how many, or None when the campaign is unknown (or expired).

        Raises:
            ReplayContended: other replays of this campaign won every attempt.
        """
        if not is_campaign_id(campaign_id):  # other text could name another key
            return None
        record = campaign_key(self._prefix, campaign_id)
        failures = campaign_key(self._prefix, campaign_id, "failures")
        keys = [record, campaign_key(self._prefix, campaign_id, "outcomes"), failures,
                campaign_key(self._prefix, campaign_id, "chunks"),
                *queue_keys(CAMPAIGNS_QUEUE)]  # fmt: skip
        for _ in range(ATTEMPTS):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hget(record, "chunks")
            pipe.llen(failures)
            first, listed = pipe.execute()
            if first is None:
                return None
            now = round(self._clock(), 3)
            # Enough envelopes for every listed entry: each recipient is listed at least once.
            envelopes: list[str] = []
            for number in range(int(first), int(first) + math.ceil(listed / CHUNK_SIZE)):
                envelopes += [chunk_envelope(campaign_id, number, now),
                              chunk_member(campaign_id, number)]  # fmt: skip
            args = [now, "1" if include_failed else "", int(first), CHUNK_SIZE, *PUSH_LIMITS,
                    self._retention, campaign_id, *envelopes]  # fmt: skip
            queued = int(self._replay(keys=keys, args=args))
            if queued == -1:
                return None
            if queued >= 0:
                return queued
        raise ReplayContended(f"campaign {campaign_id}: other replays kept moving its chunks")
