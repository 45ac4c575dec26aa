"""One delivery attempt of one message and its state transitions; Celery-free, so testable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from notifier import logs
from notifier.errors import (
    UNEXPECTED_ERRCODE,
    DailyQuotaError,
    PermanentError,
    TokenError,
    TransientError,
    WeChatError,
)
from notifier.store.breaker import Clearance
from notifier.store.messages import MessageState, is_payload
from notifier.store.metrics import WECHAT_REQUEST, Tally
from notifier.store.quota import QuotaGate
from notifier.store.ratelimit import RateLimiter
from notifier.store.tokens import TokenStore
from notifier.wechat.client import WeChatClient
from notifier.worker.circuit import Circuit, CircuitOpen

log = logging.getLogger(__name__)

WECHAT_FIELDS = ("touser", "template_id", "data", "url", "miniprogram", "client_msg_id")


def wechat_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The template/send body for a task payload: everything but our own bookkeeping."""
    return {key: payload[key] for key in WECHAT_FIELDS if key in payload}


def timed_send(client: WeChatClient, token: str, body: dict[str, Any], tally: Tally) -> int:
    """One template/send call, its duration observed in `tally` however it ends."""
    started = time.perf_counter()
    try:
        return client.send_template(token, body)
    finally:
        tally.observe(WECHAT_REQUEST, time.perf_counter() - started)


def send_with_fresh_token(
    replace: Callable[[str], str], token: str, send: Callable[[str], int]
) -> tuple[str, int]:
    """Send with `token`; if WeChat rejects it, refresh it once and send once more.

    Returns the token that worked and WeChat's msgid. A fresh token refused too is a
    transient error: back off rather than loop on refreshes.
    """
    try:
        return token, send(token)
    except TokenError as exc:
        log.info("access token rejected (errcode %d); refreshing once", exc.errcode,
                 extra={"errcode": exc.errcode})  # fmt: skip
    token = replace(token)
    try:
        return token, send(token)
    except TokenError as exc:
        raise TransientError(exc.errcode, exc.errmsg) from None


class AlreadyClaimed(Exception):
    """Raised when another worker holds this message's claim; try again once it ends.

    Not a WeChat failure, so it spends none of the message's retry budget.
    """

    def __init__(self, retry_in: int) -> None:
        super().__init__(f"another worker is sending this message; retry in {retry_in}s")
        self.retry_in = retry_in


class Sender:
    """Sends a message at most once at a time, and records how each attempt ended."""

    def __init__(
        self,
        client: WeChatClient,
        tokens: TokenStore,
        state: MessageState,
        quota: QuotaGate,
        claim_seconds: int,
        limiter: RateLimiter | None = None,
        circuit: Circuit | None = None,
    ) -> None:
        self._limiter = limiter
        self._circuit = circuit or Circuit()
        self._client = client
        self._tokens = tokens
        self._state = state
        self._quota = quota
        self._claim_seconds = claim_seconds

    def deliver(self, payload: dict[str, Any], last_attempt: bool) -> int | None:
        """Send `payload` unless it already reached a final state; return WeChat's msgid.

        Raises:
            CircuitOpen: the account's breaker is open; the message waits (unclaimed, or
                `retrying` when its own call found the breaker open), spending no retry.
            TransientError, PermanentError: as `_attempt` says.
        """
        try:
            clearance = self._circuit.ask()
        except CircuitOpen:
            # Waiting, not lost: the reconciler must leave it to its own re-publish.
            self._state.seen(payload["id"])
            raise
        try:
            return self._attempt(payload, last_attempt, clearance)
        finally:
            self._circuit.release(clearance)  # a trial that made no call, for the next caller

    def _attempt(
        self, payload: dict[str, Any], last_attempt: bool, clearance: Clearance
    ) -> int | None:
        """One claimed attempt, cleared by the breaker.

        Raises:
            TransientError: try again later (the state says `retrying`, or `dead`
                when this was the last attempt).
            PermanentError: never try again (the state says `failed`).

        A spent daily quota (45009) pauses sending for the account and leaves the
        message `deferred`, to be queued again when the quota resets.
        """
        message_id = payload["id"]
        tally = Tally()  # written with whatever this attempt records
        attempts, detail, stored = self._state.begin_attempt(message_id, self._claim_seconds, tally)
        if attempts == 0:
            log.info("message %s is %s; not sending it", message_id, detail or "unknown")
            return None
        if attempts < 0:
            raise AlreadyClaimed(int(detail) + 1)
        # Tasks carry the id; a task queued before they did carries the whole message.
        payload = payload if is_payload(payload) else (stored or {})
        # The rest of this task's lines name the attempt and the trace intake stored.
        logs.bind(attempt=attempts, trace_id=payload.get("trace"))
        if not is_payload(payload):
            self._state.release(message_id)
            log.error("message %s has no payload to send; recorded dead", message_id)
            self._state.record_dead(message_id, UNEXPECTED_ERRCODE, "no payload stored", {})
            return None
        released = False
        try:
            pause = self._quota.paused()
            if pause is not None:
                # Don't spend a call WeChat will refuse; hold the message until the reset.
                self._state.record_deferred(message_id, 45009, pause["errmsg"], payload)
                log.info("message %s deferred: sending is paused for the daily quota", message_id)
                return None
            msgid = self._send(wechat_body(payload), tally, clearance)
            self._state.record_sent(message_id, msgid, tally)  # releases the claim too
            released = True
        except CircuitOpen as exc:
            # The breaker opened on this failure, or had opened by the time it came back:
            # the message waits for the trial like the rest, whatever its attempt.
            if exc.failure is not None:
                code, text = exc.failure.errcode, exc.failure.errmsg
                log.info("message %s waits for the circuit breaker: errcode %d %s", message_id,
                         code, text, extra={"errcode": code})  # fmt: skip
                self._state.record_retrying(message_id, code, text, tally)
            raise
        except TransientError as exc:
            self._record_transient(message_id, exc, payload, last_attempt, tally)
            raise
        except DailyQuotaError as exc:
            self._quota.pause(exc.errmsg)
            log.warning(
                "message %s deferred: daily quota reached (errcode %d)", message_id, exc.errcode,
                extra={"errcode": exc.errcode},
            )  # fmt: skip
            self._state.record_deferred(message_id, exc.errcode, exc.errmsg, payload, tally)
            return None
        except PermanentError as exc:
            log.warning(
                "message %s failed permanently: errcode %d %s", message_id, exc.errcode, exc.errmsg,
                extra={"errcode": exc.errcode},
            )  # fmt: skip
            self._state.record_failed(message_id, exc.errcode, exc.errmsg, payload, tally)
            raise
        finally:
            if not released:
                self._state.release(message_id)
        log.info("message %s sent, msgid %d", message_id, msgid)
        return msgid

    def _send(self, body: dict[str, Any], tally: Tally, clearance: Clearance) -> int:
        circuit = self._circuit
        _, msgid = send_with_fresh_token(
            lambda stale: circuit.fetch(clearance, lambda: self._tokens.replace(stale)),
            circuit.fetch(clearance, self._tokens.current),
            lambda token: self._call(token, body, tally, clearance),
        )
        return msgid

    def _call(self, token: str, body: dict[str, Any], tally: Tally, clearance: Clearance) -> int:
        if self._limiter is not None:
            self._limiter.take(1)  # waits in this thread only; no retry is spent
        return self._circuit.call(clearance, lambda: timed_send(self._client, token, body, tally))

    def _record_transient(
        self, message_id: str, exc: WeChatError, payload: dict[str, Any], last_attempt: bool,
        tally: Tally,
    ) -> None:  # fmt: skip
        if last_attempt:
            log.error(
                "message %s is dead after its last attempt: errcode %d %s",
                message_id,
                exc.errcode,
                exc.errmsg,
                extra={"errcode": exc.errcode},
            )
            self._state.record_dead(message_id, exc.errcode, exc.errmsg, payload, tally)
        else:
            log.info(
                "message %s will be retried: errcode %d %s", message_id, exc.errcode, exc.errmsg,
                extra={"errcode": exc.errcode},
            )  # fmt: skip
            self._state.record_retrying(message_id, exc.errcode, exc.errmsg, tally)
