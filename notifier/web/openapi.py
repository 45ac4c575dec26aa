"""GET /openapi.json: the API as an OpenAPI 3.1 document, built once per app.

Request bodies come from the intake's marshmallow schemas (notifier/web/schema.py) and
answers from notifier/web/answers.py, through apispec's marshmallow plugin; the paths,
security and problem answers are written here (notifier/web/openapi_paths.py).
"""

from __future__ import annotations

import json
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response
from marshmallow import Schema, fields

from notifier.config import Settings
from notifier.web import answers, openapi_paths
from notifier.web.problems import PROBLEM_TYPE
from notifier.web.schema import (
    MAX_DATA_KEYS,
    MAX_VALUE_CHARS,
    CampaignSchema,
    MessageSchema,
    TemplateValue,
    printable,
)

PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
# What printable refuses, as a JSON Schema pattern (ECMA-262): control characters, the line
# and paragraph separators, bidi overrides and isolates. Lone surrogates cannot be spelled
# in every regex dialect a client may use, so the text says them instead.
PRINTABLE = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]*$"
_PRINTABLE_TEXT = "no control characters, line breaks, bidi overrides or lone surrogates"
_REQUESTS = {"Message": MessageSchema, "Campaign": CampaignSchema}
_ANSWERS = ("Problem", "Accepted", "CampaignAccepted", "MessageStatus", "RecipientStatus",
            "CampaignStatus", "Cancelled", "CampaignCancelled", "CampaignReplayed",
            "DeadLetters", "Replayed", "ReplayedAll", "Quota", "QuotaResumed",
            "Health")  # fmt: skip


def install(app: Flask, settings: Settings) -> None:
    """Add GET /openapi.json, serving a document built here, once."""
    document = json.dumps(build(settings), separators=(",", ":")).encode()

    @app.get(PATH)
    def openapi_document() -> Response:
        """The OpenAPI document; no authentication."""
        return Response(document, mimetype="application/json")


def build(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document for an app built from `settings`."""
    spec = APISpec(
        title="notifier",
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin(schema_name_resolver=schema_name)],
        info={"description": openapi_paths.DESCRIPTION},
    )
    plugin = spec.plugins[0]
    assert isinstance(plugin, MarshmallowPlugin) and plugin.converter is not None
    plugin.converter.add_attribute_function(_exact)  # type: ignore[no-untyped-call]
    for name, scheme in openapi_paths.SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, schema in _REQUESTS.items():
        spec.components.schema(name, schema=schema)
    for name in _ANSWERS:
        spec.components.schema(name, schema=getattr(answers, name))
    for name, response in openapi_paths.problem_responses(PROBLEM_TYPE).items():
        spec.components.response(name, response)
    for path, operations in openapi_paths.paths(settings).items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _campaign_data(document["components"]["schemas"]["Campaign"])
    return document


def _version() -> str:
    try:
        return version("notifier")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


def schema_name(schema: type[Schema] | Schema) -> str:
    """A component's name: the class's, without a leading underscore or a Schema suffix."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.lstrip("_")
    return name.removesuffix("Schema") or name


def ecma_pattern(pattern: str) -> str:
    r"""A Python pattern the schemas match whole, as an anchored ECMA-262 pattern.

    `\A` and `\Z` are Python's; in JSON Schema `^…$` already anchors the whole string.
    """
    core = pattern
    for start in (r"\A", "^"):
        if core.startswith(start):
            core = core[len(start) :]
            break
    for end in (r"\Z", r"\z", "$"):
        if core.endswith(end) and not core.endswith("\\" + end):
            core = core[: -len(end)]
            break
    return f"^{core}$" if "|" not in core else f"^(?:{core})$"


def _campaign_data(campaign: dict[str, Any]) -> None:
    """CampaignSchema's rule across fields, as far as JSON Schema can say it."""
    with_data = {"required": ["data"], "properties": {"data": {"minProperties": 1}}}
    campaign["anyOf"] = [with_data, {"properties": {"recipients": {"items": with_data}}}]
    campaign["description"] = (
        "Each recipient's `data` is merged over the shared `data`; together they must hold 1 to "
        f"{MAX_DATA_KEYS} fields, so either the shared `data` or every recipient's is not empty."
    )


def _exact(self: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    """What apispec does not say by itself: the custom template value, whole-string patterns,
    the printable-text rule, data keys and their count, and `uri` for URL fields."""
    if isinstance(field, TemplateValue):
        return {"type": "object", "required": ["value"], "additionalProperties": False,
                "properties": {"value": {"type": "string", "maxLength": MAX_VALUE_CHARS,
                                         "pattern": PRINTABLE, "description": _PRINTABLE_TEXT}},
                "description": 'one template field: `{"value": "…"}`, no other keys'}  # fmt: skip
    extra: dict[str, Any] = {}
    if "pattern" in ret:
        extra["pattern"] = ecma_pattern(ret["pattern"])
    elif printable in field.validators:
        extra.update(pattern=PRINTABLE, description=_PRINTABLE_TEXT)
    if ret.get("format") == "url":
        extra["format"] = "uri"
    if isinstance(field, fields.Dict) and isinstance(field.value_field, TemplateValue):
        keys = self.field2property(field.key_field) if field.key_field else {}
        extra.update(maxProperties=MAX_DATA_KEYS)
        if field.required:
            extra.update(minProperties=1)
        if "pattern" in keys:
            extra["propertyNames"] = {"pattern": keys["pattern"]}
    return extra


def document_paths(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, Flask rule) of every operation a document describes, for the tests."""
    return {
        (method.upper(), re.sub(r"\{(\w+)\}", r"<\1>", path))
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
