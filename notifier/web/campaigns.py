"""POST /v1/messages/batch and GET /v1/batches/<id>: one template to many followers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from notifier.store.campaign_ids import is_campaign_id
from notifier.web.auth import bearer_required
from notifier.web.context import web_context
from notifier.web.messages import accept, answered_status
from notifier.web.problems import problem
from notifier.web.schema import CampaignSchema

bp = Blueprint("campaigns", __name__)
_schema = CampaignSchema()


@bp.post("/v1/messages/batch")
def create_campaign() -> Response | tuple[Response, int]:
    """Accept a signed campaign; every chunk of it is on the broker before the 202 leaves."""
    svc = web_context()

    def answer(campaign_id: str, campaign: dict[str, Any]) -> dict[str, Any]:
        return {
            "batch_id": campaign_id,
            "count": svc.stores.campaigns.count(campaign_id) or 0,
            **answered_status(campaign),
        }

    return accept(
        svc.settings.max_batch_bytes, _schema, svc.admission.campaign, answer, "campaign_id"
    )


@bp.get("/v1/batches/<campaign_id>")
@bearer_required
def campaign_status(campaign_id: str) -> Response:
    """Counts per status and a page of failed recipients (`?offset=&limit=`)."""
    offset = min(max(request.args.get("offset", 0, type=int) or 0, 0), 10**9)
    limit = min(max(request.args.get("limit", 100, type=int) or 100, 1), 1000)
    # Only an id as minted reaches Redis: any other text could name another key.
    valid = is_campaign_id(campaign_id)
    summary = web_context().stores.campaigns.summary(campaign_id, offset, limit) if valid else None
    if summary is None:
        return problem(404, f"no campaign {campaign_id[:64]!r} (unknown, or past its retention)")
    return jsonify(summary)
