"""Strict checks of a template-message body, so client bugs surface in tests, not production."""

import re
from typing import Any

from . import codes

_FIELDS = frozenset({"touser", "template_id", "data", "url", "miniprogram", "client_msg_id"})
_MINIPROGRAM_FIELDS = frozenset({"appid", "pagepath"})
_OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")

Problem = tuple[int, str]


def _invalid(what: str) -> Problem:
    return codes.ARGUMENT_INVALID, f"{codes.errmsg(codes.ARGUMENT_INVALID)} {what}"


def _check_data(data: object) -> Problem | None:
    if not isinstance(data, dict):
        return _invalid("data")
    for key, item in data.items():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            return _invalid(f"data.{key}")
    return None


def _check_miniprogram(miniprogram: object) -> Problem | None:
    if not isinstance(miniprogram, dict) or set(miniprogram) - _MINIPROGRAM_FIELDS:
        return _invalid("miniprogram")
    appid = miniprogram.get("appid")
    if not isinstance(appid, str) or not appid:
        return _invalid("miniprogram.appid")
    if not isinstance(miniprogram.get("pagepath", ""), str):
        return _invalid("miniprogram.pagepath")
    return None


def _check_optional(body: dict[str, Any]) -> Problem | None:
    for field in ("url", "client_msg_id"):
        if field in body and not isinstance(body[field], str):
            return _invalid(field)
    if "miniprogram" in body:
        return _check_miniprogram(body["miniprogram"])
    return None


def check_message(body: dict[str, Any]) -> Problem | None:
    """Return WeChat's (errcode, errmsg) for a bad send body, or None when it is acceptable."""
    if set(body) - _FIELDS:
        return codes.DATA_FORMAT_ERROR, codes.errmsg(codes.DATA_FORMAT_ERROR)
    touser = body.get("touser")
    if not isinstance(touser, str) or not _OPENID.fullmatch(touser):
        return codes.INVALID_OPENID, codes.errmsg(codes.INVALID_OPENID)
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id or template_id.startswith("bad"):
        return codes.INVALID_TEMPLATE_ID, codes.errmsg(codes.INVALID_TEMPLATE_ID)
    problem = _check_data(body.get("data")) or _check_optional(body)
    if problem is not None:
        return problem
    if touser.startswith("unfollowed"):
        return codes.REQUIRE_SUBSCRIBE, codes.errmsg(codes.REQUIRE_SUBSCRIBE)
    if touser.startswith("blocked"):
        return codes.USER_BLACKLISTED, codes.errmsg(codes.USER_BLACKLISTED)
    return None
