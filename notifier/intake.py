"""POST /v1/messages: verify the signature, validate the body, queue it, answer 202."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError

from notifier.errors import BrokerUnavailable, SignatureError
from notifier.problems import problem
from notifier.queue import Enqueuer
from notifier.schema import MessageSchema, field_errors
from notifier.signature import Verifier

log = logging.getLogger(__name__)

bp = Blueprint("intake", __name__)
_schema = MessageSchema()


@bp.post("/v1/messages")
def create_message() -> Response | tuple[Response, int]:
    """Accept one signed message; it is on the broker before the 202 leaves."""
    body = request.get_data(cache=True)
    verifier: Verifier = current_app.extensions["notifier.verifier"]
    try:
        verifier.verify(dict(request.headers.items()), body)
    except SignatureError as exc:
        return problem(401, f"webhook signature refused: {exc}")
    message = _parse(body)
    if isinstance(message, Response):
        return message
    enqueuer: Enqueuer = current_app.extensions["notifier.enqueuer"]
    try:
        message_id = enqueuer.enqueue(message)
    except BrokerUnavailable:
        return problem(503, "the message queue is unavailable; nothing was queued, try again")
    return jsonify(id=message_id, status="queued"), 202


def _parse(body: bytes) -> dict[str, Any] | Response:
    """Decode and validate a JSON body, or return the problem response explaining why not."""
    if not request.mimetype or request.mimetype != "application/json":
        return problem(415, "send the body as application/json")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return problem(400, f"body is not valid JSON: {exc}")
    if not isinstance(document, dict):
        return problem(400, "body must be a JSON object")
    try:
        loaded: dict[str, Any] = _schema.load(document)
    except ValidationError as exc:
        errors = field_errors(exc)
        return problem(400, f"invalid fields: {', '.join(sorted(errors))}", errors=errors)
    return loaded
