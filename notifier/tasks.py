"""The Celery tasks: thin wiring from broker messages to the Sender and the TokenStore."""

from __future__ import annotations

import functools
import random
from typing import Any

import redis
from celery import Task, shared_task

from notifier.config import Settings, current
from notifier.errors import (
    DailyQuotaError,
    MinuteQuotaError,
    PermanentError,
    TransientError,
)
from notifier.queue import SEND_TASK
from notifier.sender import Sender
from notifier.state import MessageState
from notifier.tokens import TokenStore
from notifier.wechat import Credentials, WeChatClient

_settings = current()

# WeChat's minute quota (45011) resets within a minute; wait that out, spread a little.
MINUTE_QUOTA_DELAY = 60


@functools.cache
def _services() -> tuple[Sender, TokenStore]:
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
    # Long enough for a send, a token refresh and a resend; shorter than the
    # visibility timeout, so a crashed sender's claim is gone before redelivery.
    claim = min(
        settings.visibility_timeout - 10,
        int(2 * (settings.wechat_connect_timeout + settings.wechat_read_timeout)) + 20,
    )
    sender = Sender(client, tokens, MessageState(connection), claim_seconds=claim)
    return sender, tokens


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
    throws=(PermanentError, DailyQuotaError),
)
def send_template(self: Task, payload: dict[str, Any]) -> int | None:
    """Send one template message; transient failures come back through autoretry."""
    sender, _ = _services()
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
    _, tokens = _services()
    tokens.refresh()
