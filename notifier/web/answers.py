"""The shapes of the JSON answers, for the OpenAPI document (notifier/web/openapi.py).

The views build their answers directly; these schemas only describe them, so each one
follows the code that writes its answer, named beside it.
"""

from __future__ import annotations

from marshmallow import INCLUDE, RAISE, Schema, fields

STATUSES = ("scheduled", "queued", "retrying", "sent", "delivered", "failed", "dead", "deferred",
            "cancelled")  # fmt: skip
# A campaign's states (notifier/store/campaign_lifecycle.py; docs/api.md says each).
CAMPAIGN_STATES = ["scheduled", "queued", "sending", "finished", "cancelled"]


def _send_at() -> fields.String:
    return fields.String(metadata={"description": "when it is to be sent, as signed (scheduled)"})


def _status(**kwargs: object) -> fields.String:
    return fields.String(metadata={"enum": list(STATUSES)}, **kwargs)  # type: ignore[arg-type]


class _Closed(Schema):
    class Meta:
        unknown = RAISE


class Problem(Schema):
    """RFC 9457 problem details (notifier/web/problems.py)."""

    class Meta:
        unknown = INCLUDE  # extension members, such as a 400's `errors`

    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        metadata={"description": "every bad field of a 400, by name (by index in lists)"}
    )


class Accepted(_Closed):
    """POST /v1/messages (messages.create_message)."""

    id = fields.String(required=True, metadata={"description": "the message id"})
    status = fields.String(required=True, metadata={"enum": ["queued", "scheduled"]})
    send_at = _send_at()


class CampaignAccepted(_Closed):
    """POST /v1/messages/batch (campaigns.create_campaign)."""

    batch_id = fields.String(required=True)
    count = fields.Integer(required=True, metadata={"description": "recipients queued"})
    status = fields.String(required=True, metadata={"enum": ["queued", "scheduled"]})
    send_at = _send_at()


class HistoryEntry(Schema):
    """One status change (notifier/store/messages.py)."""

    class Meta:
        unknown = INCLUDE

    status = _status(required=True)
    at = fields.String(required=True, metadata={"description": "ISO 8601 UTC, milliseconds"})
    errcode = fields.Integer()
    detail = fields.String()


class MessageStatus(_Closed):
    """A single message's record (MessageRecord.as_dict in notifier/store/record.py)."""

    id = fields.String(required=True)
    status = _status(required=True)
    attempts = fields.Integer(required=True)
    msgid = fields.Integer(metadata={"description": "WeChat's msgid, once sent"})
    errcode = fields.Integer(metadata={"description": "the last failure's errcode"})
    errmsg = fields.String(metadata={"description": "the last failure's text"})
    history = fields.List(fields.Nested(HistoryEntry), required=True)
    payload = fields.Dict(metadata={"description": "the message as accepted (dead letters)"})
    send_at = _send_at()


class RecipientStatus(_Closed):
    """A campaign recipient, `<batch_id>-<index>` (CampaignStore.recipient_view)."""

    id = fields.String(required=True)
    batch_id = fields.String(required=True)
    status = _status(required=True)
    attempts = fields.Integer(required=True)
    msgid = fields.Integer()
    errcode = fields.Integer()


class CampaignCounts(_Closed):
    queued = fields.Integer(required=True)
    retrying = fields.Integer(required=True)
    sent = fields.Integer(required=True)
    delivered = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    dead = fields.Integer(required=True)
    deferred = fields.Integer(required=True)
    scheduled = fields.Integer(metadata={"description": "while the campaign is scheduled"})
    cancelled = fields.Integer(metadata={"description": "once the campaign is cancelled"})


class CampaignFailure(_Closed):
    """One failed or dead recipient (CampaignStore._failure)."""

    id = fields.String(required=True)
    touser = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["failed", "dead"]})
    errcode = fields.Integer(required=True, allow_none=True)
    errmsg = fields.String(required=True)


class CampaignFailures(_Closed):
    total = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    items = fields.List(fields.Nested(CampaignFailure), required=True)


class CampaignStatus(_Closed):
    """GET /v1/batches/{id} (CampaignStore.summary)."""

    id = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": CAMPAIGN_STATES})
    template_id = fields.String(required=True)
    count = fields.Integer(required=True)
    created = fields.String(required=True, metadata={"description": "ISO 8601 UTC"})
    send_at = _send_at()
    finished_at = fields.String(
        required=True, allow_none=True, metadata={"description": "ISO 8601 UTC, or null"}
    )
    counts = fields.Nested(CampaignCounts, required=True)
    failures = fields.Nested(CampaignFailures, required=True)


class CampaignReplayed(_Closed):
    """POST /v1/batches/{id}/replay (batch_replay.replay_campaign)."""

    batch_id = fields.String(required=True)
    queued = fields.Integer(required=True, metadata={"description": "recipients queued again"})


class Cancelled(_Closed):
    """DELETE /v1/messages/{id} (cancel.cancel_message)."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["cancelled"]})


class CampaignCancelled(_Closed):
    """DELETE /v1/batches/{id} (cancel.cancel_campaign)."""

    id = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": ["cancelled"]})


class DeadLetters(_Closed):
    """GET /v1/dead-letters (admin.list_dead_letters)."""

    total = fields.Integer(required=True)
    items = fields.List(fields.Nested(MessageStatus), required=True)


class Replayed(_Closed):
    """POST /v1/dead-letters/{id}/replay (admin.replay_one)."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["queued"]})


class ReplayedAll(_Closed):
    replayed = fields.Integer(required=True)


class Quota(_Closed):
    """GET /v1/quota (admin.quota_status)."""

    paused = fields.Boolean(required=True)
    deferred = fields.Integer(required=True)
    deferred_campaign_chunks = fields.Integer(required=True)
    since = fields.String(metadata={"description": "while paused: ISO 8601 UTC"})
    until = fields.String(metadata={"description": "while paused: the quota's reset"})
    errmsg = fields.String(metadata={"description": "while paused: WeChat's 45009 text"})


class QuotaResumed(_Closed):
    lifted = fields.Boolean(required=True)
    resumed = fields.Integer(required=True)


class Health(_Closed):
    status = fields.String(required=True, metadata={"enum": ["ok", "ready"]})
