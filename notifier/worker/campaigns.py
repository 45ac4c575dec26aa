"""One chunk of a campaign: each recipient sent once, outcomes kept, only failures retried."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from notifier import logs
from notifier.errors import DailyQuotaError, PermanentError, TransientError
from notifier.store.campaign_ids import recipient_id
from notifier.store.campaigns import CampaignStore, Outcome, Settled
from notifier.store.deferred import DeferredChunks
from notifier.store.metrics import Tally
from notifier.store.quota import QuotaGate
from notifier.store.ratelimit import RateLimiter
from notifier.store.tokens import TokenStore
from notifier.wechat.client import WeChatClient
from notifier.worker.circuit import Circuit, CircuitOpen
from notifier.worker.sender import send_with_fresh_token, timed_send

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


class CampaignSender:
    """Sends the recipients of a chunk one by one and returns those to try again."""

    def __init__(
        self,
        client: WeChatClient,
        tokens: TokenStore,
        campaigns: CampaignStore,
        quota: QuotaGate,
        deferred: DeferredChunks,
        limiter: RateLimiter | None = None,
        circuit: Circuit | None = None,
    ) -> None:
        self._client = client
        self._circuit = circuit or Circuit()
        self._tokens = tokens
        self._campaigns = campaigns
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
        stored = self._campaigns.chunk(task_arg["batch"], task_arg["chunk"])
        if stored is None:
            log.info("chunk %s.%s has finished already", task_arg["batch"], task_arg["chunk"])
            return None
        self._campaigns.seen(task_arg["batch"], task_arg["chunk"], time.time())
        return {**stored, "chunk": task_arg["chunk"]}

    def deliver(self, chunk: dict[str, Any], attempt: int, last_attempt: bool) -> list[Recipient]:
        """Send every recipient not yet final; return the ones that failed transiently.

        A chunk with none to retry has finished and leaves the unfinished set.
        """
        campaign_id = chunk["batch"]
        admission = self._campaigns.begin(campaign_id)  # a queued campaign is sending now
        # The rest of this task's lines name the attempt and the trace intake stored.
        logs.bind(attempt=attempt + 1, trace_id=admission[1] if admission else None)
        if admission is None:
            # Past its retention: the chunk has nobody to report to.
            log.warning("campaign %s is unknown or expired; dropping its chunk", campaign_id)
            self._finish(chunk)
            return []
        if admission[2] == "cancelled":  # cancelled before any chunk started: nobody is sent
            log.info("campaign %s is cancelled; dropping its chunk", campaign_id)
            self._finish(chunk)
            return []
        tally = Tally(admission[0])  # send latency counts from the campaign's 202
        done = self._campaigns.final_indexes(campaign_id, (r[0] for r in chunk["recipients"]))
        todo = [r for r in chunk["recipients"] if r[0] not in done]
        if self._quota.paused() is not None:
            self._defer(chunk, todo, attempt)
            return []
        try:
            token = self._first_token()
        except CircuitOpen as exc:
            if "chunk" in chunk:  # waiting, not lost: the reconciler leaves it be
                self._campaigns.seen(campaign_id, chunk["chunk"], time.time())
            raise CircuitOpen(exc.retry_in, remaining=_unsent(chunk, [], todo)) from None
        except TransientError:
            if last_attempt:
                raise
            return todo  # WeChat's token API is down: the whole chunk tries again later
        retry: list[Recipient] = []
        settled: list[Settled] = []
        recorded_at = time.monotonic()
        ends = False  # whether the chunk ends: in the same write as its last outcomes
        try:
            for position, recipient in enumerate(todo):
                index, touser, own = recipient
                try:
                    token, msgid = self._send(token, self._body(chunk, recipient), tally)
                except CircuitOpen as exc:
                    if exc.failure is not None:  # this recipient's own call found it open
                        outcome = Outcome("retrying", attempt + 1, None, exc.failure.errcode)
                        settled.append(Settled(index, outcome, touser, exc.failure.errmsg, own))
                    if "chunk" in chunk:  # waiting, not lost: the reconciler leaves it be
                        self._campaigns.seen(campaign_id, chunk["chunk"], time.time())
                    # Outcomes so far are recorded (finally, below); the rest waits.
                    rest = _unsent(chunk, retry, todo[position:])
                    raise CircuitOpen(exc.retry_in, remaining=rest) from None
                except TransientError as exc:
                    status = "dead" if last_attempt else "retrying"
                    outcome = Outcome(status, attempt + 1, None, exc.errcode)
                    settled.append(Settled(index, outcome, touser, exc.errmsg, own))
                    retry.append(recipient)
                except DailyQuotaError as exc:
                    self._quota.pause(exc.errmsg)
                    self._record(chunk, settled, tally)
                    self._defer(chunk, _unsent(chunk, retry, todo[position:]), attempt)
                    return []
                except PermanentError as exc:
                    outcome = Outcome("failed", attempt + 1, None, exc.errcode)
                    settled.append(Settled(index, outcome, touser, exc.errmsg, own))
                else:
                    tally.sent(time.time())
                    settled.append(Settled(index, Outcome("sent", attempt + 1, msgid)))
                due = len(settled) >= RECORD_EVERY or time.monotonic() - recorded_at > HEARTBEAT
                if due and position < len(todo) - 1:  # the last ones go with the chunk's end
                    self._record(chunk, settled, tally)
                    recorded_at = time.monotonic()
            ends = not retry or last_attempt
        finally:
            self._record(chunk, settled, tally, ends)
        return [] if ends else retry

    def settle(
        self, chunk: dict[str, Any], status: str, errcode: int, errmsg: str, attempt: int
    ) -> int:
        """Give every recipient of the chunk not yet final this final status; return how many.

        For when the chunk as a whole cannot go on (the token API refuses the account, a
        bug): each recipient still ends in a state an operator can see.
        """
        campaign_id = chunk["batch"]
        done = self._campaigns.final_indexes(campaign_id, (r[0] for r in chunk["recipients"]))
        rest = [r for r in chunk["recipients"] if r[0] not in done]
        outcome = Outcome(status, attempt + 1, None, errcode)
        settled = [Settled(index, outcome, touser, errmsg, own) for index, touser, own in rest]
        self._campaigns.record_many(campaign_id, settled, chunk.get("chunk"), time.time(),
                                    shared=chunk, ends=True)  # fmt: skip
        log.error("campaign %s: %d recipients %s: errcode %d %s", campaign_id, len(rest), status,
                  errcode, errmsg, extra={"errcode": errcode, "attempt": attempt + 1})  # fmt: skip
        return len(rest)

    def _record(
        self, chunk: dict[str, Any], settled: list[Settled], tally: Tally | None = None,
        ends: bool = False,
    ) -> None:  # fmt: skip
        """Write the outcomes (and measures) gathered so far, mark the chunk seen (or end it,
        with `ends`), and start gathering anew."""
        self._campaigns.record_many(chunk["batch"], settled, chunk.get("chunk"), time.time(),
                                    tally=tally, shared=chunk, ends=ends)  # fmt: skip
        settled.clear()

    def _finish(self, chunk: dict[str, Any], keep: bool = False) -> None:
        """Take a chunk out of the unfinished set (one queued whole was never in it)."""
        if "chunk" in chunk:
            self._campaigns.finish_chunk(chunk["batch"], chunk["chunk"], keep=keep)

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

    def _send(self, token: str, body: dict[str, Any], tally: Tally) -> tuple[str, int]:
        clearance = self._circuit.ask()  # CircuitOpen: this recipient is not tried

        def call(token: str) -> int:
            self._permit()
            return self._circuit.call(
                clearance, lambda: timed_send(self._client, token, body, tally)
            )

        def replace(stale: str) -> str:
            return self._circuit.fetch(clearance, lambda: self._tokens.replace(stale))

        try:
            return send_with_fresh_token(replace, token, call)
        finally:
            self._circuit.release(clearance)  # a trial that made no call, for the next caller

    def _first_token(self) -> str:
        """The chunk's access token, fetched under the breaker like a send: while WeChat is
        down the chunk waits for the breaker instead of spending its retries on the token."""
        clearance = self._circuit.ask()
        try:
            return self._circuit.fetch(clearance, self._tokens.current)
        finally:
            self._circuit.release(clearance)

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
        self._campaigns.record_many(chunk["batch"], [Settled(r[0], outcome) for r in todo])
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


def _unsent(
    chunk: dict[str, Any], retry: list[Recipient], later: list[Recipient]
) -> list[Recipient]:
    """The recipients a stopped chunk still owes: a chunk by reference reads its own again
    (final ones skipped), one queued whole keeps its transient failures with the rest."""
    return later if "chunk" in chunk else retry + later
