"""One chunk of a campaign: each recipient sent once, outcomes kept, only failures retried."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from notifier.broker.envelopes import task_message
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK
from notifier.errors import DailyQuotaError, PermanentError, TokenError, TransientError
from notifier.store.campaigns import BatchStore, Outcome, Settled, chunks_key, recipient_id
from notifier.store.quota import QuotaGate
from notifier.store.ratelimit import RateLimiter
from notifier.store.tokens import TokenStore
from notifier.store.unfinished import (
    PUSH_LIMITS,
    PUSH_LUA,
    chunk_envelope,
    chunk_member,
    queue_keys,
)
from notifier.wechat.client import WeChatClient

log = logging.getLogger(__name__)

# Permits taken from the fleet bucket at a time, and the share of the rate kept for
# single messages, so a campaign never starves the one-off message someone waits for.
PERMIT_BATCH = 10
SINGLES_RESERVE = 0.1
# Outcomes are written every this many recipients (and when the chunk ends), in one
# round trip. A worker that dies in between leaves at most this many sent recipients
# unrecorded; the chunk comes back and resends them with the same client_msg_id,
# which WeChat de-duplicates, so nobody sees a message twice.
RECORD_EVERY = 20
# ... and at least this often (seconds), which marks the chunk seen: the reconciler
# must never take a chunk still being sent for a lost one.
HEARTBEAT = 10.0

Recipient = list[Any]  # [index, touser, own data or None]


class DeferredChunks:
    """Campaign chunks held back by the daily quota, queued again when it resets.

    A chunk waits here as its reference (its recipients stay in the campaign's chunk
    hash); a chunk parked before tasks carried references waits whole.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self._redis = connection
        self.key = "notifier:deferred-chunks"
        self._release = connection.register_script(_RELEASE)

    def park(self, chunk: dict[str, Any]) -> None:
        """Keep a chunk's reference (or a whole chunk) until the pause ends."""
        self._redis.rpush(self.key, json.dumps(chunk))

    def count(self) -> int:
        """Chunks waiting."""
        return int(self._redis.llen(self.key))

    def release(self) -> int:
        """Queue every parked chunk again, each moved in one atomic step.

        Returns how many recipients the chunks queued again hold.
        """
        recipients = 0
        # Left by the release of an older version that died between moving and publishing.
        while self._redis.lmove(f"{self.key}:moving", self.key, "RIGHT", "LEFT") is not None:
            pass
        # Only what is parked now: a chunk deferred again during the release (the quota
        # ran out at once) waits for the next one instead of circling here.
        budget = self.count()
        while budget > 0 and (raws := self._redis.lrange(self.key, 0, min(budget, 100) - 1)):
            budget -= len(raws)
            now = round(time.time(), 3)
            args: list[Any] = [now, *PUSH_LIMITS]
            sizes = self._redis.pipeline(transaction=False)
            for raw in raws:
                chunk = json.loads(raw)
                if "recipients" in chunk:  # parked whole: queued whole and untracked, as before
                    member, envelope = "", task_message(CHUNK_TASK, [chunk], CAMPAIGNS_QUEUE)
                    recipients += len(chunk["recipients"])
                else:
                    member = chunk_member(chunk["batch"], chunk["chunk"])
                    envelope = chunk_envelope(chunk["batch"], chunk["chunk"], now)
                    sizes.hget(chunks_key("notifier", chunk["batch"]), str(chunk["chunk"]))
                args += [raw, envelope, member]
            recipients += sum(len(json.loads(c)["recipients"]) for c in sizes.execute() if c)
            moved = int(self._release(keys=[self.key, *queue_keys(CAMPAIGNS_QUEUE)], args=args))
            if moved < len(raws):
                break  # another release took the rest
        return recipients


# Moves parked chunks to the queue: each leaves the list only as its task is pushed, so
# two releases at once queue a chunk once. ARGV: now, the push limits, then per chunk
# its parked text, its envelope and its task id ('' for a whole chunk: not tracked).
_RELEASE = (
    PUSH_LUA
    + """
local moved = 0
for i = 4, #ARGV, 3 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    push(KEYS[2], KEYS[3], KEYS[4], ARGV[i + 1], ARGV[i + 2], ARGV[1], tonumber(ARGV[2]),
         ARGV[3])
    moved = moved + 1
  end
end
return moved
"""
)


class BulkSender:
    """Sends the recipients of a chunk one by one and returns those to try again."""

    def __init__(
        self,
        client: WeChatClient,
        tokens: TokenStore,
        batches: BatchStore,
        quota: QuotaGate,
        deferred: DeferredChunks,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._batches = batches
        self._quota = quota
        self._deferred = deferred
        self._limiter = limiter
        self._local = threading.local()  # permits in hand, per sending thread

    def resolve(self, task_arg: dict[str, Any]) -> dict[str, Any] | None:
        """The chunk a task names, with its recipients; None when it has finished already.

        Tasks carry a reference ({batch, chunk}); one queued before they did carries the
        whole chunk, which is used as it is.
        """
        if "recipients" in task_arg:
            return task_arg
        stored = self._batches.chunk(task_arg["batch"], task_arg["chunk"])
        if stored is None:
            log.info("chunk %s.%s has finished already", task_arg["batch"], task_arg["chunk"])
            return None
        self._batches.seen(task_arg["batch"], task_arg["chunk"], time.time())
        return {**stored, "chunk": task_arg["chunk"]}

    def deliver(self, chunk: dict[str, Any], attempt: int, last_attempt: bool) -> list[Recipient]:
        """Send every recipient not yet final; return the ones that failed transiently.

        A chunk with none to retry has finished and leaves the unfinished set.
        """
        batch_id = chunk["batch"]
        if not self._batch_ready(batch_id):
            self._finish(chunk)
            return []
        done = self._batches.final_indexes(batch_id, (r[0] for r in chunk["recipients"]))
        todo = [r for r in chunk["recipients"] if r[0] not in done]
        if self._quota.paused() is not None:
            self._defer(chunk, todo, attempt)
            return []
        try:
            token = self._tokens.current()
        except TransientError:
            if last_attempt:
                raise
            return todo  # WeChat's token API is down: the whole chunk tries again later
        retry: list[Recipient] = []
        settled: list[Settled] = []
        recorded_at = time.monotonic()
        try:
            for position, recipient in enumerate(todo):
                index, touser = recipient[0], recipient[1]
                try:
                    token, msgid = self._send(token, self._body(chunk, recipient))
                except TransientError as exc:
                    status = "dead" if last_attempt else "retrying"
                    outcome = Outcome(status, attempt + 1, None, exc.errcode)
                    settled.append(Settled(index, outcome, touser, exc.errmsg))
                    retry.append(recipient)
                except DailyQuotaError as exc:
                    self._quota.pause(exc.errmsg)
                    self._record(chunk, settled)
                    # A chunk queued whole keeps its transient failures with the rest.
                    rest = todo[position:] if "chunk" in chunk else retry + todo[position:]
                    self._defer(chunk, rest, attempt)
                    return []
                except PermanentError as exc:
                    outcome = Outcome("failed", attempt + 1, None, exc.errcode)
                    settled.append(Settled(index, outcome, touser, exc.errmsg))
                else:
                    settled.append(Settled(index, Outcome("sent", attempt + 1, msgid)))
                if len(settled) >= RECORD_EVERY or time.monotonic() - recorded_at > HEARTBEAT:
                    self._record(chunk, settled)
                    recorded_at = time.monotonic()
        finally:
            self._record(chunk, settled)
        if retry and not last_attempt:
            return retry
        self._finish(chunk)
        return []

    def settle(
        self, chunk: dict[str, Any], status: str, errcode: int, errmsg: str, attempt: int
    ) -> int:
        """Give every recipient of the chunk not yet final this final status; return how many.

        For when the chunk as a whole cannot go on (the token API refuses the account, a
        bug): each recipient still ends in a state an operator can see.
        """
        batch_id = chunk["batch"]
        done = self._batches.final_indexes(batch_id, (r[0] for r in chunk["recipients"]))
        rest = [r for r in chunk["recipients"] if r[0] not in done]
        outcome = Outcome(status, attempt + 1, None, errcode)
        settled = [Settled(index, outcome, touser, errmsg) for index, touser, _ in rest]
        self._batches.record_many(batch_id, settled)
        self._finish(chunk)
        log.error("batch %s: %d recipients %s: errcode %d %s", batch_id, len(rest), status,
                  errcode, errmsg)  # fmt: skip
        return len(rest)

    def _record(self, chunk: dict[str, Any], settled: list[Settled]) -> None:
        """Write the outcomes gathered so far, mark the chunk seen, and start gathering anew."""
        self._batches.record_many(chunk["batch"], settled, chunk.get("chunk"), time.time())
        settled.clear()

    def _finish(self, chunk: dict[str, Any], keep: bool = False) -> None:
        """Take a chunk out of the unfinished set (one queued whole was never in it)."""
        if "chunk" in chunk:
            self._batches.finish_chunk(chunk["batch"], chunk["chunk"], keep=keep)

    def _batch_ready(self, batch_id: str) -> bool:
        """A chunk whose batch record is gone (past its retention) has nobody to report to."""
        if self._batches.state(batch_id) is None:
            log.warning("batch %s is unknown or expired; dropping its chunk", batch_id)
            return False
        return True

    def _body(self, chunk: dict[str, Any], recipient: Recipient) -> dict[str, Any]:
        index, touser, own = recipient
        body: dict[str, Any] = {
            "touser": touser,
            "template_id": chunk["template_id"],
            "data": {**(chunk.get("data") or {}), **(own or {})},
            "client_msg_id": recipient_id(chunk["batch"], index),
        }
        for key in ("url", "miniprogram"):
            if key in chunk:
                body[key] = chunk[key]
        return body

    def _send(self, token: str, body: dict[str, Any]) -> tuple[str, int]:
        self._permit()
        try:
            return token, self._client.send_template(token, body)
        except TokenError:
            token = self._tokens.replace(token)
        self._permit()
        try:
            return token, self._client.send_template(token, body)
        except TokenError as exc:
            raise TransientError(exc.errcode, exc.errmsg) from None

    def _permit(self) -> None:
        if self._limiter is None:
            return
        permits = getattr(self._local, "permits", 0)
        if permits <= 0:
            reserve = self._limiter.per_second * SINGLES_RESERVE
            permits = self._limiter.take(PERMIT_BATCH, reserve=reserve)
        self._local.permits = permits - 1

    def _defer(self, chunk: dict[str, Any], todo: list[Recipient], attempt: int) -> None:
        """Park the rest of the chunk until the quota resets; each recipient shows `deferred`."""
        if not todo:
            self._finish(chunk)
            return
        outcome = Outcome("deferred", attempt, None, 45009)
        self._batches.record_many(chunk["batch"], [Settled(r[0], outcome) for r in todo])
        if "chunk" in chunk:
            # Its recipients stay stored; the reference waits, out of the unfinished set
            # (left first, so a release that queues it at once tracks it again).
            self._finish(chunk, keep=True)
            self._deferred.park({"batch": chunk["batch"], "chunk": chunk["chunk"]})
        else:
            self._deferred.park({**chunk, "recipients": todo})
        log.warning(
            "batch %s: %d recipients deferred by the daily quota", chunk["batch"], len(todo)
        )
