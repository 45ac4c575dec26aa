"""POST /v1/batches/<id>/replay: queue a campaign's dead (and failed) recipients again."""

from __future__ import annotations

import json

from flask import Blueprint, Response

from notifier.web.auth import bearer_required
from notifier.web.context import web_context
from notifier.web.messages import json_object, read_body
from notifier.web.problems import problem

bp = Blueprint("batch_replay", __name__)
# The only field of the optional body.
INCLUDE_FAILED = "include_failed"


@bp.post("/v1/batches/<campaign_id>/replay")
@bearer_required
def replay_campaign(campaign_id: str) -> Response:
    """Queue the campaign's dead recipients again (failed ones too, if the body asks)."""
    svc = web_context()
    include_failed = _include_failed(read_body(svc.settings.max_body_bytes))
    if isinstance(include_failed, Response):
        return include_failed
    queued = svc.stores.campaigns.replay(campaign_id, include_failed)  # None: no such campaign
    if queued is None:
        return problem(404, f"no campaign {campaign_id[:64]!r} (unknown, or past its retention)")
    answer = {"batch_id": campaign_id, "queued": queued}
    return Response(json.dumps(answer), 202, mimetype="application/json")


def _include_failed(body: bytes) -> bool | Response:
    """The body's flag: none (an empty body) means dead recipients only."""
    if not body:
        return False
    document = json_object(body)
    if isinstance(document, Response):
        return document
    if set(document) - {INCLUDE_FAILED}:
        return problem(400, f'body must be a JSON object with at most "{INCLUDE_FAILED}"')
    flag = document.get(INCLUDE_FAILED, False)
    if not isinstance(flag, bool):
        return problem(400, f'"{INCLUDE_FAILED}" must be true or false')
    return flag
