"""The Celery tasks: thin wiring from broker messages to the senders and the token store."""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any

import redis
from celery import Task, shared_task
from kombu.exceptions import OperationalError

from notifier.broker.queues import CHUNK_TASK, SEND_TASK
from notifier.config import current
from notifier.errors import (
    UNEXPECTED_ERRCODE,
    MinuteQuotaError,
    PermanentError,
    RetriesExhausted,
    TransientError,
)
from notifier.store.messages import FINAL
from notifier.worker.circuit import CircuitOpen
from notifier.worker.context import worker_context
from notifier.worker.sender import AlreadyClaimed


class RecordingTask(Task):  # type: ignore[misc]
    """Records `dead` for any failure the task did not record itself, but Redis's own."""

    def on_failure(
        self, exc: Exception, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:  # fmt: skip
        if isinstance(exc, PermanentError | RetriesExhausted) or not args:
            return  # recorded `failed` or `dead` already
        if isinstance(exc, redis.RedisError | OperationalError):
            # Redis away or refusing writes: the message is still unfinished, and the
            # reconciler queues it again; recording it dead would end it for nothing.
            log.warning("task %s left for the reconciler: %s", task_id, type(exc).__name__)
            return
        with contextlib.suppress(redis.RedisError):
            self.record_dead(args[0], repr(exc)[:200])

    def record_dead(self, payload: dict[str, Any], errmsg: str) -> None:
        """Record one message dead unless it already reached a final state."""
        state = worker_context().stores.messages
        if state.status(payload["id"]) not in FINAL:
            # An id-only payload leaves the record's own payload in place.
            state.record_dead(payload["id"], UNEXPECTED_ERRCODE, errmsg, payload)


_settings = current()
log = logging.getLogger(__name__)

# WeChat's minute quota (45011) resets within a minute; wait that out, spread a little.
MINUTE_QUOTA_DELAY = 60


def _look_again(task: Task, arg: dict[str, Any], countdown: float) -> None:
    """Publish the running task again, under its own id and with its retry count, to run
    after `countdown`: a wait (a claim held elsewhere, an open breaker) spends no retry."""
    task.apply_async((arg,), countdown=countdown, task_id=task.request.id,
                     retries=task.request.retries)  # fmt: skip


@shared_task(
    name=SEND_TASK,
    bind=True,
    acks_late=True,
    ignore_result=True,
    base=RecordingTask,
    # Redis errors too (a lock not got in time, a lost connection): retried, never dropped.
    autoretry_for=(TransientError, redis.RedisError),
    retry_backoff=True,
    retry_backoff_max=_settings.send_retry_backoff_max,
    retry_jitter=True,
    max_retries=_settings.send_max_retries,
    rate_limit=_settings.send_rate_limit,
    # Expected outcomes: reported as failures in Flower, logged without a traceback.
    throws=(PermanentError, RetriesExhausted),
)
def send_template(self: Task, payload: dict[str, Any]) -> int | None:
    """Send one template message; transient failures come back through autoretry."""
    sender = worker_context().sender
    last_attempt = self.request.retries >= self.max_retries
    try:
        return sender.deliver(payload, last_attempt=last_attempt)
    except AlreadyClaimed as exc:
        # Another copy is being sent (or its worker died holding the claim): look again
        # when the claim has expired, as a fresh task so no retry is spent.
        _look_again(self, payload, exc.retry_in)
        return None
    except CircuitOpen as exc:
        # WeChat's breaker is open: look again when it lets a call through, as the same
        # task with the same retry count, so waiting spends no retry.
        _look_again(self, payload, exc.countdown())
        return None
    except TransientError as exc:
        if last_attempt:
            # Recorded `dead` already: an expected end, reported without a traceback.
            raise RetriesExhausted(exc.errcode, exc.errmsg) from None
        if not isinstance(exc, MinuteQuotaError):
            raise
        delay = min(MINUTE_QUOTA_DELAY, _settings.visibility_timeout // 2)
        raise self.retry(exc=exc, countdown=delay + random.uniform(0, 5)) from None


@shared_task(name="notifier.refresh_token", ignore_result=True, acks_late=True)
def refresh_token() -> None:
    """Keep the access token ahead of its expiry (run by beat every 100 minutes)."""
    worker_context().tokens.refresh()


@shared_task(name="notifier.resume_deferred", ignore_result=True)
def resume_deferred() -> int:
    """Queue deferred messages again once the daily-quota pause is over (beat, every minute)."""
    svc = worker_context()
    if svc.quota.paused() is not None:
        return 0
    resumed = svc.stores.replayer.resume_deferred("resumed after the quota pause")
    if resumed:
        log.warning("daily quota reset: %d deferred messages queued again", resumed)
    return resumed


class ChunkTask(RecordingTask):
    """Settles a chunk's unfinished recipients as `dead` when the chunk fails unexpectedly."""

    def record_dead(self, payload: dict[str, Any], errmsg: str) -> None:
        campaigns = worker_context().campaigns
        chunk = campaigns.resolve(payload)
        if chunk is not None:
            campaigns.settle(chunk, "dead", UNEXPECTED_ERRCODE, errmsg, self.request.retries)


@shared_task(
    name=CHUNK_TASK,
    bind=True,
    base=ChunkTask,
    acks_late=True,
    ignore_result=True,
    max_retries=_settings.send_max_retries,
    throws=(PermanentError, RetriesExhausted),
)
def send_chunk(self: Task, ref: dict[str, Any]) -> int:
    """Send a campaign chunk; retry only its recipients that failed transiently."""
    retries = self.request.retries
    campaigns = worker_context().campaigns
    chunk = campaigns.resolve(ref)
    if chunk is None:
        return 0  # finished already: this was a second copy
    try:
        again = campaigns.deliver(chunk, attempt=retries, last_attempt=retries >= self.max_retries)
    except CircuitOpen as exc:
        # As send_template: the chunk waits, its outcomes so far kept, spending no retry.
        _look_again(self, _again(ref, exc.remaining), exc.countdown())
        return 0
    except PermanentError as exc:
        # The account cannot send at all (bad secret, IP not whitelisted): say so for each.
        campaigns.settle(chunk, "failed", exc.errcode, exc.errmsg, retries)
        raise
    except TransientError as exc:
        campaigns.settle(chunk, "dead", exc.errcode, exc.errmsg, retries)
        raise RetriesExhausted(exc.errcode, exc.errmsg) from None
    except redis.RedisError as exc:
        # Lost Redis mid-chunk: recipients already final are skipped on the next run. A
        # retry Redis refuses too leaves the chunk unfinished, for the reconciler.
        raise self.retry(exc=exc, countdown=random.uniform(1, 5), max_retries=retries + 1) from None
    if again:
        # The same backoff as send_template's autoretry: full jitter, capped. A chunk
        # named by reference is read again, its final recipients skipped.
        countdown = random.uniform(0, min(_settings.send_retry_backoff_max, 2**retries))
        raise self.retry(args=(_again(ref, again),), countdown=countdown)
    return len(chunk["recipients"])


def _again(ref: dict[str, Any], recipients: list[Any]) -> dict[str, Any]:
    """The chunk's task argument next time: a reference is read again (its final recipients
    skipped); a chunk queued whole carries only the recipients still owed."""
    return ref if "recipients" not in ref else {**ref, "recipients": recipients}


@shared_task(name="notifier.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    """Queue again accepted work that neither a queue nor a worker holds (beat, every 10 s)."""
    return worker_context().reconciler.run()
