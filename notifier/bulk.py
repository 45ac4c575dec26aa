"""One chunk of a campaign: each recipient sent once, outcomes kept, only failures retried."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import redis

from notifier.batches import BatchStore, Outcome, Settled, recipient_id
from notifier.errors import DailyQuotaError, PermanentError, TokenError, TransientError
from notifier.queue import PublishMany
from notifier.quota import QuotaGate
from notifier.ratelimit import RateLimiter
from notifier.tokens import TokenStore
from notifier.wechat import WeChatClient

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

Recipient = list[Any]  # [index, touser, own data or None]


class DeferredChunks:
    """Campaign chunks held back by the daily quota, queued again when it resets."""

    def __init__(self, connection: redis.Redis, publish_many: PublishMany | None = None) -> None:
        self._redis = connection
        self._publish_many = publish_many
        self.key = "notifier:deferred-chunks"

    def park(self, chunk: dict[str, Any]) -> None:
        """Keep a chunk (only its unsent recipients) until the pause ends."""
        self._redis.rpush(self.key, json.dumps(chunk))

    def count(self) -> int:
        """Chunks waiting."""
        return int(self._redis.llen(self.key))

    def release(self) -> int:
        """Queue every parked chunk again; return how many recipients that was."""
        if self._publish_many is None:
            raise RuntimeError("no publisher to release deferred chunks with")
        recipients = 0
        # A release that died between moving and publishing left chunks here: take them back.
        while self._redis.lmove(f"{self.key}:moving", self.key, "RIGHT", "LEFT") is not None:
            pass
        while True:
            raw = self._redis.lmove(self.key, f"{self.key}:moving", "LEFT", "RIGHT")
            if raw is None:
                return recipients
            chunk = json.loads(raw)
            self._publish_many([chunk])
            self._redis.lrem(f"{self.key}:moving", 1, raw)
            recipients += len(chunk["recipients"])


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

    def deliver(self, chunk: dict[str, Any], attempt: int, last_attempt: bool) -> list[Recipient]:
        """Send every recipient not yet final; return the ones that failed transiently."""
        batch_id = chunk["batch"]
        if not self._batch_ready(batch_id):
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
                    self._record(batch_id, settled)
                    self._defer(chunk, todo[position:], attempt)
                    break
                except PermanentError as exc:
                    outcome = Outcome("failed", attempt + 1, None, exc.errcode)
                    settled.append(Settled(index, outcome, touser, exc.errmsg))
                else:
                    settled.append(Settled(index, Outcome("sent", attempt + 1, msgid)))
                if len(settled) >= RECORD_EVERY:
                    self._record(batch_id, settled)
        finally:
            self._record(batch_id, settled)
        return [] if last_attempt else retry

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
        log.error("batch %s: %d recipients %s: errcode %d %s", batch_id, len(rest), status,
                  errcode, errmsg)  # fmt: skip
        return len(rest)

    def _record(self, batch_id: str, settled: list[Settled]) -> None:
        """Write the outcomes gathered so far and start gathering anew."""
        self._batches.record_many(batch_id, settled)
        settled.clear()

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
            return
        outcome = Outcome("deferred", attempt, None, 45009)
        self._batches.record_many(chunk["batch"], [Settled(r[0], outcome) for r in todo])
        self._deferred.park({**chunk, "recipients": todo})
        log.warning(
            "batch %s: %d recipients deferred by the daily quota", chunk["batch"], len(todo)
        )
