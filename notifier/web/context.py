"""What the web views share, built once per app so views stay free of wiring."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from notifier.config import Settings
from notifier.signature import Verifier
from notifier.store.admission import Admission
from notifier.store.campaigns import BatchStore
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.store.replay import Replayer
from notifier.web.auth import BearerTokens
from notifier.wechat.receipts import CallbackVerifier, ReplayGuard
from notifier.worker.campaigns import DeferredChunks


@dataclass(frozen=True)
class WebServices:
    """What the views use, built once per app."""

    settings: Settings
    verifier: Verifier
    admission: Admission
    state: MessageState
    bearer: BearerTokens
    replayer: Replayer
    quota: QuotaGate | None
    callback: CallbackVerifier | None
    callback_guard: ReplayGuard
    batches: BatchStore
    deferred: DeferredChunks


def services() -> WebServices:
    """The services of the app handling the current request."""
    found: WebServices = current_app.extensions["notifier"]
    return found
