"""POST /v1/messages: verify the signature, validate the body, queue it once, answer 202."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from notifier import logs
from notifier.errors import BrokerUnavailable, MalformedSignatureHeaders, SignatureError
from notifier.signature import HEADERS
from notifier.store.admission import Admitted, IdempotencyConflict
from notifier.web import tracing
from notifier.web.context import web_context
from notifier.web.problems import problem
from notifier.web.schema import MessageSchema, field_errors

log = logging.getLogger(__name__)

bp = Blueprint("intake", __name__)
_schema = MessageSchema()


@bp.post("/v1/messages")
def create_message() -> Response | tuple[Response, int]:
    """Accept one signed message; it is on the broker before the 202 leaves."""
    svc = web_context()
    return accept(
        svc.settings.max_body_bytes,
        _schema,
        svc.admission.message,
        lambda message_id, message: {"id": message_id, **answered_status(message)},
        "message_id",
    )


def answered_status(document: dict[str, Any]) -> dict[str, str]:
    """What the 202 says of when the work goes: queued now, or scheduled for its send_at."""
    if document.get("send_at"):
        return {"status": "scheduled", "send_at": document["send_at"]}
    return {"status": "queued"}


def accept(
    limit: int,
    schema: Schema,
    admit: Callable[[str, bytes, dict[str, Any], str], Admitted],
    answer: Callable[[str, dict[str, Any]], dict[str, Any]],
    id_field: str,
) -> Response | tuple[Response, int]:
    """Signature, body, schema, then one atomic admission: the path every signed intake takes.

    The id admitted goes into the request's log fields as `id_field`, and the request's
    trace id into the record, for the worker's lines.
    """
    svc = web_context()
    body = read_body(limit)
    try:
        webhook_id = svc.verifier.verify(_signing_headers(), body)
    except MalformedSignatureHeaders as exc:
        return problem(400, f"webhook signature headers refused: {exc}")
    except SignatureError as exc:
        return problem(401, f"webhook signature refused: {exc}")
    logs.bind(webhook_id=webhook_id)
    document = _parse(body, schema)
    if isinstance(document, Response):
        return document
    try:
        admitted = admit(webhook_id, body, document, tracing.trace_id())
    except IdempotencyConflict as exc:
        return problem(409, str(exc))
    except BrokerUnavailable:
        log.warning("redis unavailable: request refused with 503")
        return problem(
            503, "the message queue is unavailable; retry with the same webhook-id and body"
        )
    logs.bind(**{id_field: admitted.id})
    # Serialised directly: the app's JSON provider costs twice as much for two fields.
    return Response(json.dumps(answer(admitted.id, document)), 202, mimetype="application/json")


def read_body(limit: int) -> bytes:
    """The raw body, refusing with 413 anything over `limit`, chunked bodies included.

    A body over the limit is read and dropped a piece at a time, never held whole: the
    client gets its 413 on a connection still in step, and a refused body costs one piece
    of memory, however large it says it is.
    """
    length = request.content_length
    if length is not None and length <= limit:
        # One read of exactly the declared size, past the layers a body of unknown size needs.
        return bytes(request.environ["wsgi.input"].read(length))
    stream = request.stream  # werkzeug refuses at once what declares more than any limit
    body = _read_most(stream, limit + 1) if length is None else b""
    if length is None and len(body) <= limit:
        return body
    while stream.read(_PIECE):
        pass
    raise RequestEntityTooLarge()


# Bytes read at a time from a body of unknown size or one being dropped.
_PIECE = 64 * 1024


def _read_most(stream: Any, most: int) -> bytes:
    """Up to `most` bytes of a stream, however short its reads come back."""
    pieces: list[bytes] = []
    got = 0
    while got < most and (piece := stream.read(min(_PIECE, most - got))):
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def _signing_headers() -> dict[str, str]:
    """Only the headers a signature needs: copying them all costs more than verifying.

    A header sent twice arrives as one value joined by commas (gunicorn and werkzeug both
    join them, so `getlist` sees one): notifier/signature.py's formats refuse the join.
    """
    return {name: value for name in HEADERS if (value := request.headers.get(name)) is not None}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate keys: which one wins is a guess no sender should depend on."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("an object has the same key twice")
    return document


def _parse(body: bytes, schema: Schema) -> dict[str, Any] | Response:
    """Decode and validate a JSON body, or return the problem response explaining why not."""
    document = json_object(body)
    if isinstance(document, Response):
        return document
    try:
        loaded: dict[str, Any] = schema.load(document)
    except ValidationError as exc:
        errors = field_errors(exc)
        return problem(400, f"invalid fields: {', '.join(sorted(errors))}", errors=errors)
    return loaded


def compressed_refused(what: str = "body") -> Response | None:
    """415 for a Content-Encoding other than identity: nothing here decodes one, so a
    compressed body is refused, not misread as text; None for a plain body."""
    if request.headers.get("Content-Encoding", "").strip().lower() in ("", "identity"):
        return None
    refused = problem(415, f"Content-Encoding is not supported; send the {what} uncompressed")
    refused.headers["Accept-Encoding"] = "identity"  # RFC 7694: what would be accepted
    return refused


def json_object(body: bytes) -> dict[str, Any] | Response:
    """A JSON object sent as application/json, or the problem response explaining why not."""
    refused = compressed_refused()
    if refused is not None:
        return refused
    if not request.mimetype or request.mimetype != "application/json":
        return problem(415, "send the body as application/json")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return problem(400, "body is not UTF-8")
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        return problem(400, f"body is not valid JSON: {exc}")
    if not isinstance(document, dict):
        return problem(400, "body must be a JSON object")
    return document
