"""What the web views share, built once per app so views stay free of wiring."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from notifier.batches import BatchStore
from notifier.bearer import BearerTokens
from notifier.bulk import DeferredChunks
from notifier.config import Settings
from notifier.idempotency import IdempotencyKeys
from notifier.queue import BatchEnqueuer, Enqueuer
from notifier.quota import QuotaGate
from notifier.receipts import CallbackVerifier, ReplayGuard
from notifier.replay import Replayer
from notifier.signature import Verifier
from notifier.state import MessageState


@dataclass(frozen=True)
class WebServices:
    """What the views use, built once per app."""

    settings: Settings
    verifier: Verifier
    enqueuer: Enqueuer
    idempotency: IdempotencyKeys
    state: MessageState
    bearer: BearerTokens
    replayer: Replayer
    quota: QuotaGate | None
    callback: CallbackVerifier | None
    callback_guard: ReplayGuard
    batches: BatchStore
    batch_enqueuer: BatchEnqueuer
    deferred: DeferredChunks


def services() -> WebServices:
    """The services of the app handling the current request."""
    found: WebServices = current_app.extensions["notifier"]
    return found
