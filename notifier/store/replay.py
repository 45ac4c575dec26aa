"""Sending parked messages again: dead letters on request, deferred ones after the pause."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from notifier.store.deferred import DeferredChunks
from notifier.store.messages import MessageRecord, MessageState

log = logging.getLogger(__name__)

BATCH = 500


class Replayer:
    """Requeues failed, dead or deferred messages under their own ids, keeping their history."""

    def __init__(self, state: MessageState, deferred: DeferredChunks) -> None:
        self._state = state
        self._deferred = deferred

    def list(self, index: str, limit: int = 100, offset: int = 0) -> list[MessageRecord]:
        """Records in an index (dead letters or deferred), oldest first."""
        records = (self._state.get(i) for i in self._state.ids(index, limit, offset))
        return [r for r in records if r is not None]

    def replay(self, message_id: str, reason: str = "replayed") -> bool:
        """Queue one parked message again; False if it is unknown or not parked."""
        if self._state.requeue(message_id, reason) is None:
            return False
        log.info("message %s %s", message_id, reason)
        return True

    def replay_all(
        self,
        index: str,
        reason: str = "replayed",
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Queue every message of an index again, in batches; report (done, total) as it goes."""
        # Only what was parked before we started: a message that fails again during the
        # run is parked anew with a later score and waits for the next replay.
        until = time.time()
        total = self._state.count(index, until)
        done = 0
        while ids := self._state.ids_until(index, until, BATCH):
            done += sum(self.replay(i, reason) for i in ids)
            if progress:
                progress(done, total)
        return done

    def resume_deferred(
        self, reason: str, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Queue every deferred message and campaign chunk again; return how many recipients."""
        resumed = 0
        if self._state.count(self._state.deferred_index):
            resumed += self.replay_all(self._state.deferred_index, reason, progress)
        if self._deferred.count():
            resumed += self._deferred.release()
        return resumed
