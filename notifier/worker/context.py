"""What the worker's tasks work with, built once per process from the settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from notifier.config import Settings, current
from notifier.store.quota import QuotaGate
from notifier.store.ratelimit import RateLimiter
from notifier.store.stores import Stores, open_stores
from notifier.store.tokens import TokenStore
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.campaigns import CampaignSender
from notifier.worker.circuit import Circuit
from notifier.worker.reconciler import MARGIN, Reconciler
from notifier.worker.sender import Sender


@dataclass(frozen=True)
class WorkerContext:
    """The stores, and the senders, token store and reconciler built on them."""

    stores: Stores
    quota: QuotaGate  # a worker always has WECHAT_APP_ID
    sender: Sender
    campaigns: CampaignSender
    tokens: TokenStore
    reconciler: Reconciler


@functools.cache
def worker_context() -> WorkerContext:
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
    stores = open_stores(settings)
    connection = stores.connection
    tokens = TokenStore(connection, client)
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
    circuit = Circuit(stores.breaker)  # one per process: it keeps what it last read
    return WorkerContext(
        stores=stores,
        quota=quota,
        sender=Sender(
            client,
            tokens,
            stores.messages,
            quota,
            claim_seconds=claim,
            limiter=limiter,
            circuit=circuit,
        ),
        campaigns=CampaignSender(
            client,
            tokens,
            stores.campaigns,
            quota,
            stores.deferred,
            limiter=limiter,
            circuit=circuit,
        ),
        tokens=tokens,
        reconciler=Reconciler(stores.unfinished, stale_after=settings.visibility_timeout + MARGIN),
    )
