"""The OpenAPI document's paths, security schemes and problem answers (see openapi.py).

Each operation lists every status its view, the app's error handlers and the framework can
answer with; docs/api.md says the same in prose.
"""

from __future__ import annotations

from typing import Any

from notifier.broker.queues import MESSAGE_ID
from notifier.config import Settings
from notifier.store.campaign_ids import RECIPIENT_ID

DESCRIPTION = (
    "Signed webhooks in, WeChat template messages out. The intake (`POST /v1/messages`, "
    "`POST /v1/messages/batch`) is signed per Standard Webhooks: the three `webhook-*` headers "
    "together, the signature an HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with "
    "the exact body bytes. Status and operator endpoints take `Authorization: Bearer <token>` "
    "with a token from API_TOKENS. Every refusal is `application/problem+json` (RFC 9457). "
    "The prose reference is docs/api.md."
)
_HEADER = "a Standard Webhooks header; the three are required together"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "webhookId": {"type": "apiKey", "in": "header", "name": "webhook-id",
                  "description": f"{_HEADER}: a unique id, also the idempotency key; 1-256"
                                 " printable ASCII characters, no spaces or commas"},
    "webhookTimestamp": {"type": "apiKey", "in": "header", "name": "webhook-timestamp",
                         "description": f"{_HEADER}: Unix seconds, within 5 minutes of now"},
    "webhookSignature": {"type": "apiKey", "in": "header", "name": "webhook-signature",
                         "description": f"{_HEADER}: `v1,<base64 HMAC-SHA256>`, space-separated"
                                        " when several"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "a token from API_TOKENS"},
    "metricsBearer": {"type": "http", "scheme": "bearer",
                      "description": "METRICS_TOKEN, required only when it is set"},
}  # fmt: skip
SIGNED: list[dict[str, list[str]]] = [
    {"webhookId": [], "webhookTimestamp": [], "webhookSignature": []}
]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
NONE: list[dict[str, list[str]]] = []

# Component name of each problem answer, by status.
PROBLEMS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 408: "RequestTimeout",
            409: "Conflict", 413: "ContentTooLarge", 415: "UnsupportedMediaType",
            503: "Unavailable"}  # fmt: skip
_PROBLEM_TEXT = {
    400: "not UTF-8, malformed JSON, or invalid fields (`errors` names each one)",
    401: "a missing, forged or stale signature, or no valid bearer token",
    404: "no such resource (unknown, past its retention, or not configured)",
    408: "the body did not arrive within BODY_TIMEOUT_SECONDS",
    409: "this webhook-id was already used with a different body",
    413: "the body is larger than the endpoint's limit",
    415: "the body is not sent as the endpoint's media type, or is sent compressed",
    503: "Redis could not be reached or refuses writes; retry with the same request",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True,
                               "description": "`Signature` or `Bearer`, realm notifier"}},
    503: {"Retry-After": {"schema": {"type": "string"}, "required": True,
                          "description": "seconds"}},
}  # fmt: skip
# Ids as minted (notifier/broker/queues.py, new_message_id), and a campaign recipient's
# `<batch_id>-<index>` (notifier/store/campaigns.py, recipient_id); anything else is a 404.
_ID = f"^{MESSAGE_ID.pattern}$"
_MESSAGE_ID = f"^(?:{MESSAGE_ID.pattern}|{RECIPIENT_ID.pattern})$"
_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def problem_responses(media_type: str) -> dict[str, dict[str, Any]]:
    """The components' problem answers, one per status."""
    return {
        name: {
            "description": _PROBLEM_TEXT[status],
            "content": {media_type: {"schema": _ref("schemas", "Problem")}},
            **({"headers": _HEADERS[status]} if status in _HEADERS else {}),
        }
        for status, name in PROBLEMS.items()
    }


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref("schemas", name)}}}  # fmt: skip


def _op(
    summary: str,
    ok: dict[str, dict[str, Any]],
    problems: tuple[int, ...],
    security: list[dict[str, list[str]]],
    **more: Any,
) -> dict[str, Any]:
    responses = {**ok, **{str(s): _ref("responses", PROBLEMS[s]) for s in problems}}
    return {"summary": summary, "security": security, "responses": responses, **more}


def _path(name: str, description: str, pattern: str = _ID) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}  # fmt: skip


def _query(name: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", **schema}}  # fmt: skip


_PAGE = [
    _query("offset", "items to skip; clamped to 0-1e9", type="integer", default=0),
    _query("limit", "items per page; clamped to 1-1000", type="integer", default=100),
]
_TRACEPARENT = {
    "name": "traceparent", "in": "header", "required": False,
    "description": "W3C Trace Context; a malformed one is ignored, never refused",
    "schema": {"type": "string"},
}  # fmt: skip
_SIGNATURE = [
    _query("signature", "sha1 of the sorted token, timestamp and nonce", required=True),
    _query(
        "timestamp",
        "Unix seconds; more than 5 minutes off is refused",
        required=True,
        pattern="^[0-9]{1,12}$",
    ),
    _query("nonce", "a random string", required=True),
]
_RECEIPT = {
    "type": "object", "xml": {"name": "xml"},
    "description": "a WeChat push; TEMPLATESENDJOBFINISH events are receipts (others are ignored)",
    "properties": {
        "ToUserName": {"type": "string"}, "FromUserName": {"type": "string"},
        "CreateTime": {"type": "integer"}, "MsgType": {"type": "string", "example": "event"},
        "Event": {"type": "string", "example": "TEMPLATESENDJOBFINISH"},
        "MsgID": {"type": "integer"}, "Status": {"type": "string", "example": "success"},
        "Encrypt": {"type": "string", "description": "safe mode: the encrypted push"},
    },
}  # fmt: skip

# POST /v1/batches/{id}/replay's optional body (notifier/web/batch_replay.py).
_REPLAY = {
    "type": "object", "additionalProperties": False,
    "properties": {"include_failed": {
        "type": "boolean", "default": False,
        "description": "also failed recipients whose send WeChat refused with an errcode"}},
}  # fmt: skip


def _body(name: str, limit: int) -> dict[str, Any]:
    return {"required": True, "description": f"at most {limit} bytes, signed as sent",
            "content": {"application/json": {"schema": _ref("schemas", name)}}}  # fmt: skip


def paths(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every path and its operations, for an app built from `settings`."""
    intake, read, admin = (400, 401, 408, 409, 413, 415, 503), (401, 404, 503), (401, 503)
    cancel = (401, 404, 409, 503)
    callback = {"description": "`success`, or the echoed `echostr`", "content": _TEXT}
    refused = {"description": "the signature or timestamp does not match", "content": _TEXT}
    unreadable = {
        "description": "the XML or the safe-mode envelope is unreadable",
        "content": _TEXT,
    }
    status = {"oneOf": [_ref("schemas", "MessageStatus"), _ref("schemas", "RecipientStatus")]}
    document = {
        "description": "OpenAPI 3.1",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    metrics = {"description": "Prometheus text format 0.0.4", "content": _TEXT}
    # fmt: off
    return {
        "/v1/messages": {"post": _op(
            "Queue one template message", {"202": _json("Accepted", "recorded and queued")},
            intake, SIGNED, operationId="createMessage", parameters=[_TRACEPARENT],
            requestBody=_body("Message", settings.max_body_bytes))},
        "/v1/messages/batch": {"post": _op(
            "Queue one template to many followers",
            {"202": _json("CampaignAccepted", "every chunk queued")}, intake, SIGNED,
            operationId="createCampaign", parameters=[_TRACEPARENT],
            requestBody=_body("Campaign", settings.max_batch_bytes))},
        "/v1/messages/{message_id}": {"get": _op(
            "A message's status and history",
            {"200": {"description": "a message, or a campaign recipient `<batch_id>-<index>`",
                     "content": {"application/json": {"schema": status}}}},
            read, BEARER, operationId="messageStatus",
            parameters=[_path("message_id", "a message id, or `<batch_id>-<index>`",
                              _MESSAGE_ID)]),
            "delete": _op(
            "Cancel a scheduled message (409 once it is queued or later)",
            {"200": _json("Cancelled", "cancelled: it will not be sent")}, cancel, BEARER,
            operationId="cancelMessage",
            parameters=[_path("message_id", "a message id", _MESSAGE_ID)])},
        "/v1/batches/{campaign_id}": {"get": _op(
            "A campaign's counts and a page of its failures",
            {"200": _json("CampaignStatus", "the campaign")}, read, BEARER,
            operationId="campaignStatus",
            parameters=[_path("campaign_id", "the batch_id of the 202"), *_PAGE]),
            "delete": _op(
            "Cancel a campaign that has not started (409 once it has)",
            {"200": _json("CampaignCancelled", "cancelled: nobody of it will be sent to")},
            cancel, BEARER, operationId="cancelCampaign",
            parameters=[_path("campaign_id", "the batch_id of the 202")])},
        "/v1/batches/{campaign_id}/replay": {"post": _op(
            "Queue a campaign's dead (and failed) recipients again",
            {"202": _json("CampaignReplayed", "how many were queued again")},
            (400, 401, 404, 408, 413, 415, 503), BEARER, operationId="replayCampaign",
            parameters=[_path("campaign_id", "the batch_id of the 202")],
            requestBody={"required": False, "description": "optional; none replays dead only",
                         "content": {"application/json": {"schema": _REPLAY}}})},
        "/v1/dead-letters": {"get": _op(
            "Failed and dead messages, oldest first", {"200": _json("DeadLetters", "a page")},
            admin, BEARER, operationId="listDeadLetters", parameters=_PAGE)},
        "/v1/dead-letters/{message_id}/replay": {"post": _op(
            "Queue one dead letter again under its id",
            {"202": _json("Replayed", "queued again")}, read, BEARER, operationId="replayOne",
            parameters=[_path("message_id", "a failed, dead or deferred message")])},
        "/v1/dead-letters/replay": {"post": _op(
            "Queue every dead letter again", {"202": _json("ReplayedAll", "queued again")},
            admin, BEARER, operationId="replayAll")},
        "/v1/quota": {"get": _op(
            "Whether the daily-quota pause is in force", {"200": _json("Quota", "the pause")},
            admin, BEARER, operationId="quotaStatus")},
        "/v1/quota/resume": {"post": _op(
            "Lift the pause and queue the deferred messages",
            {"202": _json("QuotaResumed", "lifted")}, admin, BEARER, operationId="quotaResume")},
        "/wechat/callback": {
            "get": _op(
                "WeChat's server-URL handshake", {"200": callback, "403": refused}, (404,), NONE,
                operationId="callbackHandshake",
                parameters=[*_SIGNATURE, _query("echostr", "echoed back", required=True)]),
            "post": _op(
                "A WeChat push: delivery receipts",
                {"200": callback, "400": unreadable, "403": refused}, (404, 408, 413, 415, 503),
                NONE,
                operationId="callbackEvent",
                parameters=[*_SIGNATURE, _query("encrypt_type", "`aes` in safe mode"),
                            _query("msg_signature", "safe mode: covers `Encrypt` too")],
                requestBody={"required": True, "content": {"text/xml": {"schema": _RECEIPT}}})},
        "/metrics": {"get": _op(
            "The fleet's Prometheus metrics", {"200": metrics}, admin,
            [{}, {"metricsBearer": []}], operationId="metrics")},
        "/healthz": {"get": _op(
            "Liveness", {"200": _json("Health", "`ok`")}, (), NONE, operationId="healthz")},
        "/readyz": {"get": _op(
            "Readiness: Redis answers PING within 1 s", {"200": _json("Health", "`ready`")},
            (503,), NONE, operationId="readyz")},
        "/openapi.json": {"get": _op(
            "This document", {"200": document}, (), NONE, operationId="openapi")},
    }
    # fmt: on
