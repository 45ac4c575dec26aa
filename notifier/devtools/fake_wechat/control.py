"""Test-only endpoints to script faults and receipts, break tokens and inspect deliveries."""

from typing import Any

from flask import Flask, Response, request

from .faults import parse_faults
from .page import render_page
from .state import FakeState

RECENT_ON_PAGE = 50


def _stats(state: FakeState) -> dict[str, Any]:
    return {**state.ledger.stats(), "pending_faults": state.faults.pending()}


def register_control(app: Flask, state: FakeState) -> None:
    """Add the /_fake/* control routes, the status page and the health check."""

    @app.post("/_fake/faults")
    def add_faults() -> tuple[dict[str, Any], int]:
        try:
            items = parse_faults(request.get_json(force=True, silent=True))
        except ValueError as error:
            return {"error": str(error)}, 400
        return {"queued": state.faults.extend(items)}, 200

    @app.get("/_fake/receipts")
    def receipt_settings() -> dict[str, Any]:
        return state.receipts.describe()

    @app.post("/_fake/receipts")
    def configure_receipts() -> tuple[dict[str, Any], int]:
        try:
            state.receipts.configure(request.get_json(force=True, silent=True))
        except (ValueError, TypeError) as error:
            return {"error": str(error)}, 400
        return state.receipts.describe(), 200

    @app.post("/_fake/invalidate-token")
    def invalidate_tokens() -> dict[str, Any]:
        return {"invalidated": state.tokens.invalidate_all()}

    @app.post("/_fake/expire-tokens")
    def expire_tokens() -> dict[str, Any]:
        return {"expired": state.tokens.expire_all()}

    @app.post("/_fake/reset")
    def reset() -> dict[str, Any]:
        state.reset()
        return {"reset": True}

    @app.get("/_fake/messages")
    def messages() -> tuple[dict[str, Any], int]:
        since = request.args.get("since", "0")
        if not since.isdigit():
            return {"error": "since must be a non-negative integer"}, 400
        found = state.ledger.messages(int(since))
        return {"count": len(found), "messages": found}, 200

    @app.get("/_fake/stats")
    def stats() -> dict[str, Any]:
        return _stats(state)

    @app.get("/")
    def index() -> str:
        return render_page(_stats(state), state.ledger.recent(RECENT_ON_PAGE))

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")
