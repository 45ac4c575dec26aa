"""/wechat/callback: WeChat's server-URL handshake and its delivery receipts."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from notifier.store.campaigns import split_recipient_id
from notifier.store.messages import DELIVERED, FAILED
from notifier.web.context import web_context
from notifier.web.problems import problem
from notifier.wechat.receipts import CallbackError, parse_xml, receipt_from

log = logging.getLogger(__name__)

bp = Blueprint("callback", __name__)


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.get("/wechat/callback")
def handshake() -> Response:
    """Prove to WeChat that we own the URL: echo `echostr` when the signature matches."""
    verifier = web_context().callback
    if verifier is None:
        return problem(404, "the WeChat callback is not configured (WECHAT_CALLBACK_TOKEN)")
    args = request.args
    try:
        verifier.check(args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
    except CallbackError:
        return _text("signature mismatch", 403)
    return _text(args.get("echostr", ""))


@bp.post("/wechat/callback")
def event() -> Response:
    """Apply a delivery receipt; answer `success` at once so WeChat stops pushing it."""
    svc = web_context()
    verifier = svc.callback
    if verifier is None:
        return problem(404, "the WeChat callback is not configured (WECHAT_CALLBACK_TOKEN)")
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    try:
        verifier.check(args.get("signature", ""), timestamp, nonce)
        if not svc.stores.callback_nonces.fresh(timestamp, nonce):
            return _text("success")  # a repeat of a callback already handled
        fields = parse_xml(request.get_data())
        if args.get("encrypt_type") == "aes":
            encrypted = fields.get("Encrypt", "")
            verifier.check(args.get("msg_signature", ""), timestamp, nonce, encrypted)
            fields = parse_xml(verifier.decrypt(encrypted))
        receipt = receipt_from(fields)
    except CallbackError as exc:
        log.warning("wechat callback refused: %s", exc)
        status = 403 if "signature" in str(exc) or "timestamp" in str(exc) else 400
        return _text(str(exc), status)
    if receipt is None:
        return _text("success")
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
    return _text("success")
