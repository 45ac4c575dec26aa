"""The worker process's collaborators, built once per process from the settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis

from notifier.config import Settings, current
from notifier.store.campaigns import BatchStore
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.ratelimit import RateLimiter
from notifier.store.replay import Replayer
from notifier.store.tokens import TokenStore
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.campaigns import BulkSender, DeferredChunks
from notifier.worker.reconciler import MARGIN, Reconciler
from notifier.worker.sender import Sender


@dataclass(frozen=True)
class Services:
    """What the tasks work with."""

    sender: Sender
    bulk: BulkSender
    tokens: TokenStore
    quota: QuotaGate
    replayer: Replayer
    deferred: DeferredChunks
    state: MessageState
    reconciler: Reconciler


@functools.cache
def services() -> Services:
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
            ca_bundle=settings.wechat_ca_bundle,
            proxies=settings.wechat_proxies,
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
    deferred = DeferredChunks(connection)
    batches = BatchStore(connection, retention=settings.status_retention)
    return Services(
        sender=Sender(client, tokens, state, quota, claim_seconds=claim, limiter=limiter),
        bulk=BulkSender(client, tokens, batches, quota, deferred, limiter=limiter),
        tokens=tokens,
        quota=quota,
        replayer=Replayer(state),
        deferred=deferred,
        state=state,
        reconciler=Reconciler(
            connection,
            stale_after=settings.visibility_timeout + MARGIN,
            retention=settings.status_retention,
        ),
    )
