"""/wechat/callback: WeChat's server-URL handshake and its delivery receipts."""

from __future__ import annotations

import contextlib
import logging

import redis
from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from notifier.store.campaign_ids import split_recipient_id
from notifier.store.messages import DELIVERED, FAILED
from notifier.web.context import web_context
from notifier.web.messages import compressed_refused, read_body
from notifier.web.problems import problem
from notifier.wechat.receipts import (
    CallbackError,
    CallbackUnproven,
    CallbackVerifier,
    Receipt,
    parse_xml,
    receipt_from,
)

log = logging.getLogger(__name__)

bp = Blueprint("callback", __name__)

PATH = "/wechat/callback"
# The callback's own body limit, whatever the intake's: WeChat's XML is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.get(PATH)
def handshake() -> Response:
    """Prove to WeChat that we own the URL: echo `echostr` when the signature matches."""
    verifier = web_context().callback
    if verifier is None:
        return problem(404, "the WeChat callback is not configured (WECHAT_CALLBACK_TOKEN)")
    args = request.args
    timestamp = args.get("timestamp", "")
    try:
        verifier.check(args.get("signature", ""), timestamp, args.get("nonce", ""))
        web_context().stores.callback_nonces.check_time(timestamp)  # a captured URL goes stale
    except CallbackError as exc:
        return _text(str(exc), 403)
    return _text(args.get("echostr", ""))


@bp.post(PATH)
def event() -> Response:
    """Apply a delivery receipt; answer `success` at once so WeChat stops pushing it."""
    svc = web_context()
    verifier = svc.callback
    if verifier is None:
        return problem(404, "the WeChat callback is not configured (WECHAT_CALLBACK_TOKEN)")
    body = read_body(MAX_BODY_BYTES)  # over it: 413, answered by the app with this limit
    refused = compressed_refused("XML")
    if refused is not None:
        return refused
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    try:
        verifier.check(args.get("signature", ""), timestamp, nonce)
        svc.stores.callback_nonces.check_time(timestamp)  # a stale URL is refused unparsed
        receipt = _open(verifier, body, args)
        # Spent only now, once the push is verified and read whole: a push refused above
        # (cut short, say) may come again with the same nonce and still be applied.
        if not svc.stores.callback_nonces.fresh(timestamp, nonce):
            return _text("success")  # a repeat of a callback already handled
    except CallbackError as exc:
        log.warning("wechat callback refused: %s", exc)
        return _text(str(exc), 403 if isinstance(exc, CallbackUnproven) else 400)
    if receipt is None:
        return _text("success")
    try:
        _apply(receipt)
    except redis.RedisError:
        # Not applied: the nonce must not turn WeChat's retry into an ignored repeat.
        with contextlib.suppress(redis.RedisError):
            svc.stores.callback_nonces.forget(timestamp, nonce)
        raise
    return _text("success")


def _apply(receipt: Receipt) -> None:
    """Move the receipt's message (or campaign recipient) to delivered or failed."""
    svc = web_context()
    outcome = DELIVERED if receipt.delivered else FAILED
    message_id = svc.stores.messages.message_for_msgid(receipt.msgid)
    recipient = split_recipient_id(message_id) if message_id else None
    if recipient is not None:
        if svc.stores.campaigns.apply_receipt(*recipient, outcome, receipt.reason):
            log.info("message %s %s (%s)", message_id, outcome, receipt.reason)
    elif message_id is None:
        svc.stores.messages.keep_early_receipt(receipt.msgid, outcome, receipt.reason)
        log.info("receipt for unknown msgid %d kept for its send", receipt.msgid)
    elif svc.stores.messages.record_receipt(message_id, outcome, receipt.reason):
        log.info("message %s %s (%s)", message_id, outcome, receipt.reason)


def _open(verifier: CallbackVerifier, body: bytes, args: MultiDict[str, str]) -> Receipt | None:
    """The push's receipt, if it is one: safe mode's envelope checked and opened first.

    Raises:
        CallbackUnproven: a plain push where safe mode is set, or msg_signature mismatches.
        CallbackError: the XML, ciphertext or receipt cannot be trusted.
    """
    if verifier.encrypted_only and args.get("encrypt_type") != "aes":
        raise CallbackUnproven("a plain push, but WECHAT_ENCODING_AES_KEY asks for safe mode")
    fields = parse_xml(body)
    if args.get("encrypt_type") == "aes":
        encrypted = fields.get("Encrypt", "")
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        verifier.check(args.get("msg_signature", ""), timestamp, nonce, encrypted)
        fields = parse_xml(verifier.decrypt(encrypted))
    return receipt_from(fields)
