"""What the web views share, built once per app by the factory so views stay free of wiring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from notifier.config import Settings
from notifier.signature import Verifier
from notifier.store.admission import Admission
from notifier.store.stores import Stores
from notifier.wechat.receipts import CallbackVerifier

if TYPE_CHECKING:  # auth's decorator reads this context: a cycle only for the type checker
    from notifier.web.auth import BearerTokens


@dataclass(frozen=True)
class WebContext:
    """The stores, and what only the web process needs: signatures, tokens, admission."""

    settings: Settings
    stores: Stores
    verifier: Verifier
    admission: Admission
    bearer: BearerTokens
    callback: CallbackVerifier | None  # None without WECHAT_CALLBACK_TOKEN


def web_context() -> WebContext:
    """The context of the app handling the current request."""
    found: WebContext = current_app.extensions["notifier"]
    return found
