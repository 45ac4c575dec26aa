"""The stores every process works with, built in one place so web, worker and CLI agree."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from notifier.config import Settings
from notifier.store.breaker import Breaker, BreakerPolicy
from notifier.store.campaigns import CampaignStore
from notifier.store.deferred import DeferredChunks
from notifier.store.messages import MessageState
from notifier.store.nonces import ReplayGuard
from notifier.store.quota import QuotaGate
from notifier.store.replay import Replayer
from notifier.store.schedule import Schedule
from notifier.store.unfinished import UnfinishedWork


@dataclass(frozen=True)
class Stores:
    """Redis and the records kept in it; `quota` and `breaker` are None without WECHAT_APP_ID,
    and `breaker` too when BREAKER_MIN_CALLS=0 switches it off."""

    connection: redis.Redis
    messages: MessageState
    campaigns: CampaignStore
    deferred: DeferredChunks
    replayer: Replayer
    quota: QuotaGate | None
    breaker: Breaker | None
    callback_nonces: ReplayGuard
    unfinished: UnfinishedWork
    schedule: Schedule


def open_stores(settings: Settings, socket_timeout: float = 5) -> Stores:
    """Connect to REDIS_URL (lazily: nothing is sent yet) and build the stores on it."""
    connection = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout,
        health_check_interval=10,
    )
    messages = MessageState(connection, retention=settings.status_retention)
    deferred = DeferredChunks(connection)
    quota = QuotaGate(connection, settings.wechat_app_id) if settings.wechat_app_id else None
    return Stores(
        connection=connection,
        messages=messages,
        campaigns=CampaignStore(connection, retention=settings.status_retention),
        deferred=deferred,
        replayer=Replayer(messages, deferred),
        quota=quota,
        breaker=_breaker(connection, settings),
        callback_nonces=ReplayGuard(connection),
        unfinished=UnfinishedWork(connection, retention=settings.status_retention),
        schedule=Schedule(connection, retention=settings.status_retention),
    )


def _breaker(connection: redis.Redis, settings: Settings) -> Breaker | None:
    if not settings.wechat_app_id or not settings.breaker_min_calls:
        return None
    policy = BreakerPolicy(
        min_calls=settings.breaker_min_calls,
        error_rate=settings.breaker_error_rate,
        window=settings.breaker_window,
        sleep=settings.breaker_sleep,
        # A trial is one call: a connect and a read at most, then another may go.
        trial_seconds=int(settings.wechat_connect_timeout + settings.wechat_read_timeout) + 5,
    )
    return Breaker(connection, settings.wechat_app_id, policy)
