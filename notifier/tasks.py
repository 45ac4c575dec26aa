"""The Celery tasks: thin wiring from broker messages to the Sender and the TokenStore."""

from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass
from typing import Any

import redis
from celery import Task, shared_task

from notifier.config import Settings, current
from notifier.errors import MinuteQuotaError, PermanentError, TransientError
from notifier.queue import SEND_TASK, celery_publisher
from notifier.quota import QuotaGate
from notifier.ratelimit import RateLimiter
from notifier.replay import Replayer
from notifier.sender import Sender
from notifier.state import MessageState
from notifier.tokens import TokenStore
from notifier.wechat import Credentials, WeChatClient

_settings = current()
log = logging.getLogger(__name__)

# WeChat's minute quota (45011) resets within a minute; wait that out, spread a little.
MINUTE_QUOTA_DELAY = 60


@dataclass(frozen=True)
class Services:
    """The per-process collaborators of the tasks."""

    sender: Sender
    tokens: TokenStore
    quota: QuotaGate
    replayer: Replayer
    state: MessageState


@functools.cache
def _services() -> Services:
    """Build the per-process clients lazily, after the pool has forked."""
    settings: Settings = current().require_worker()
    client = WeChatClient(
        Credentials(
            api_base=settings.wechat_api_base,
            app_id=settings.wechat_app_id,
            app_secret=settings.wechat_app_secret,
            token_api=settings.wechat_token_api,
            connect_timeout=settings.wechat_connect_timeout,
            read_timeout=settings.wechat_read_timeout,
        )
    )
    connection = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
    )
    tokens = TokenStore(connection, client)
    state = MessageState(connection, retention=settings.status_retention)
    quota = QuotaGate(connection, settings.wechat_app_id)
    # Long enough for a send, a token refresh and a resend; shorter than the
    # visibility timeout, so a crashed sender's claim is gone before redelivery.
    claim = min(
        settings.visibility_timeout - 10,
        int(2 * (settings.wechat_connect_timeout + settings.wechat_read_timeout)) + 20,
    )
    limiter = (
        RateLimiter(connection, settings.wechat_app_id, settings.wechat_send_rate)
        if settings.wechat_send_rate
        else None
    )
    sender = Sender(client, tokens, state, quota, claim_seconds=claim, limiter=limiter)
    return Services(sender, tokens, quota, Replayer(state, celery_publisher()), state)


@shared_task(
    name=SEND_TASK,
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(TransientError, redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    retry_backoff_max=_settings.send_retry_backoff_max,
    retry_jitter=True,
    max_retries=_settings.send_max_retries,
    rate_limit=_settings.send_rate_limit,
    # Expected outcomes: reported as failures in Flower, logged without a traceback.
    throws=(PermanentError,),
)
def send_template(self: Task, payload: dict[str, Any]) -> int | None:
    """Send one template message; transient failures come back through autoretry."""
    sender = _services().sender
    last_attempt = self.request.retries >= self.max_retries
    try:
        return sender.deliver(payload, last_attempt=last_attempt)
    except MinuteQuotaError as exc:
        if last_attempt:
            raise
        delay = min(MINUTE_QUOTA_DELAY, _settings.visibility_timeout // 2)
        raise self.retry(exc=exc, countdown=delay + random.uniform(0, 5)) from None


@shared_task(name="notifier.refresh_token", ignore_result=True, acks_late=True)
def refresh_token() -> None:
    """Keep the access token ahead of its expiry (run by beat every 100 minutes)."""
    _services().tokens.refresh()


@shared_task(name="notifier.resume_deferred", ignore_result=True)
def resume_deferred() -> int:
    """Queue deferred messages again once the daily-quota pause is over (beat, every minute)."""
    services = _services()
    if services.quota.paused() is not None:
        return 0
    index = services.state.deferred_index
    if services.state.count(index) == 0:
        return 0
    resumed = services.replayer.replay_all(index, reason="resumed after the quota pause")
    log.warning("daily quota reset: %d deferred messages queued again", resumed)
    return resumed
