"""GET /v1/messages/<id>: where a message is in its lifecycle, for callers with a bearer token."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from notifier.broker.queues import is_message_id
from notifier.store.campaign_ids import split_recipient_id
from notifier.web.auth import bearer_required
from notifier.web.context import web_context
from notifier.web.problems import problem

bp = Blueprint("status", __name__)


@bp.get("/v1/messages/<message_id>")
@bearer_required
def message_status(message_id: str) -> Response:
    """The message's status, attempts, msgid, last error and history."""
    recipient = split_recipient_id(message_id)
    if recipient is not None:
        return _recipient_status(message_id, *recipient)
    # Only an id as minted reaches Redis: any other text could name another key.
    record = web_context().stores.messages.get(message_id) if is_message_id(message_id) else None
    if record is None:
        return problem(404, f"no message {message_id[:64]!r} (unknown, or past its retention)")
    return jsonify(record.as_dict())


def _recipient_status(message_id: str, campaign_id: str, index: int) -> Response:
    """A campaign recipient: its latest outcome (campaigns keep no per-recipient history)."""
    view = web_context().stores.campaigns.recipient_view(campaign_id, index)
    if view is None:
        return problem(404, f"no message {message_id!r} (unknown, or past its retention)")
    return jsonify(view)
