"""The shape of an accepted message, checked before anything is queued."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from notifier.store.schedule import HORIZON, PAST, SEND_AT, due_time

# WeChat openids and template ids are URL-safe base64-like strings. Every pattern is anchored
# with \A and \Z: `$` would also match before a final newline, letting "abc\n" through.
_ID = validate.Regexp(r"\A[A-Za-z0-9_-]{1,64}\Z", error="must be 1-64 letters, digits, '-' or '_'")
_CLIENT_MSG_ID = validate.Regexp(
    r"\A[A-Za-z0-9_.:-]{1,64}\Z", error="must be 1-64 letters, digits or '_.:-'"
)
_DATA_KEY = validate.Regexp(r"\A[A-Za-z0-9_]{1,32}\Z", error="must be 1-32 letters, digits or '_'")
# What no follower's phone shows as meant: control characters (line breaks included,
# which WeChat strips), lone surrogates, the Unicode line and paragraph separators, and
# bidirectional overrides and isolates, which can make a notice read differently.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_DATA_KEYS = 50
MAX_VALUE_CHARS = 200


def printable(value: str) -> None:
    if _UNSHOWN.search(value):
        raise ValidationError(
            "must not contain control characters, line breaks, bidi overrides or lone surrogates"
        )


class TemplateValue(fields.Field):  # type: ignore[type-arg]
    """One template field, `{"value": "..."}`; a field type, as a nested schema costs 4x more.

    Colours and other legacy keys are refused rather than silently dropped.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict) or value.keys() != {"value"}:
            raise ValidationError('must be an object with one key, "value"')
        text = value["value"]
        if not isinstance(text, str):
            raise ValidationError("value: must be a string")
        if len(text) > MAX_VALUE_CHARS:
            raise ValidationError(f"value: must be at most {MAX_VALUE_CHARS} characters")
        printable(text)
        return {"value": text}


class _Miniprogram(Schema):
    class Meta:
        unknown = RAISE

    appid = fields.String(required=True, validate=[validate.Length(min=1, max=64), printable])
    pagepath = fields.String(validate=[validate.Length(max=1024), printable])


class SendAt(fields.String):
    """When to send: an RFC 3339 date-time with its offset, from a minute ago to 30 days ahead.

    Loaded as the text signed, which the record keeps; the due time is read from it again
    at admission (notifier/store/schedule.py).
    """

    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self) -> None:
        pattern = validate.Regexp(SEND_AT, error="must be an RFC 3339 date-time with an offset, "
                                  'such as "2026-12-02T09:00:00+08:00"')  # fmt: skip
        super().__init__(validate=[pattern, self._in_window])

    def _in_window(self, value: str) -> None:
        if SEND_AT.fullmatch(value) is None:
            return  # the pattern said why
        try:
            due = due_time(value)
        except ValueError as exc:  # a day or time that does not exist
            raise ValidationError(f"is not a real date and time: {exc}") from None
        now = self.clock()
        if due < now - PAST:
            raise ValidationError(f"must not be more than {PAST} seconds in the past")
        if due > now + HORIZON:
            raise ValidationError(f"must be at most {HORIZON // 86400} days ahead")


def _data_field(required: bool) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=_DATA_KEY),
        values=TemplateValue(),
        required=required,
    )


class MessageSchema(Schema):
    """One template message as a business system sends it."""

    class Meta:
        unknown = RAISE

    touser = fields.String(required=True, validate=_ID)
    template_id = fields.String(required=True, validate=_ID)
    data = _data_field(required=True)
    url = fields.Url(schemes={"http", "https"}, validate=[validate.Length(max=1024), printable])
    miniprogram = fields.Nested(_Miniprogram)
    client_msg_id = fields.String(validate=_CLIENT_MSG_ID)
    send_at = SendAt()

    @validates_schema
    def _data_not_empty(self, item: dict[str, Any], **_: Any) -> None:
        data = item.get("data")
        if data is not None and not 1 <= len(data) <= MAX_DATA_KEYS:
            raise ValidationError(f"must hold 1 to {MAX_DATA_KEYS} fields", "data")


MAX_RECIPIENTS = 10_000


class _Recipient(Schema):
    """One follower of a campaign, with fields that override the shared data."""

    class Meta:
        unknown = RAISE

    touser = fields.String(required=True, validate=_ID)
    data = _data_field(required=False)


class CampaignSchema(Schema):
    """One template to many followers: shared data, merged under each recipient's own."""

    class Meta:
        unknown = RAISE

    template_id = fields.String(required=True, validate=_ID)
    data = _data_field(required=False)
    url = fields.Url(schemes={"http", "https"}, validate=[validate.Length(max=1024), printable])
    miniprogram = fields.Nested(_Miniprogram)
    recipients = fields.List(
        fields.Nested(_Recipient),
        required=True,
        validate=validate.Length(min=1, max=MAX_RECIPIENTS),
    )
    send_at = SendAt()

    @validates_schema
    def _recipients_are_distinct_and_have_data(self, item: dict[str, Any], **_: Any) -> None:
        """One pass: a follower named twice would be messaged twice, and each needs data."""
        shared = item.get("data") or {}
        first: dict[str, int] = {}  # openid -> index of the recipient that named it first
        bad: dict[int, dict[str, list[str]]] = {}
        for index, recipient in enumerate(item.get("recipients") or []):
            problems: dict[str, list[str]] = {}
            earlier = first.setdefault(recipient["touser"], index)
            if earlier != index:
                problems["touser"] = [f"repeats recipient {earlier}"]
            own = recipient.get("data") or {}
            if not 1 <= len(shared.keys() | own.keys()) <= MAX_DATA_KEYS:
                problems["data"] = [
                    f"shared and own data together must hold 1 to {MAX_DATA_KEYS} fields"
                ]
            if problems:
                bad[index] = problems
        if bad:
            raise ValidationError(bad, "recipients")


def field_errors(error: ValidationError) -> dict[str, Any]:
    """Flatten marshmallow's messages into a JSON-friendly mapping of field to problems."""
    messages = error.messages
    return messages if isinstance(messages, dict) else {"_schema": messages}
