"""DELETE /v1/messages/<id> and DELETE /v1/batches/<id>: withdraw work before it starts.

A message can be cancelled only while it is `scheduled`: once queued, a worker may take
it at any moment, and there is no step a cancel could share with its send. A campaign
also while it is `queued` and none of its chunks has started, which its start checks.
The schedule's cancel and its mover are each one atomic step, so exactly one wins.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from notifier.broker.queues import is_message_id
from notifier.store.campaign_ids import is_campaign_id, split_recipient_id
from notifier.store.schedule import CANCELLED, SCHEDULED
from notifier.web.auth import bearer_required
from notifier.web.context import web_context
from notifier.web.problems import problem

bp = Blueprint("cancel", __name__)


@bp.delete("/v1/messages/<message_id>")
@bearer_required
def cancel_message(message_id: str) -> Response:
    """Cancel a scheduled message: `cancelled`, out of the schedule, never sent."""
    if split_recipient_id(message_id) is not None:
        return problem(409, "a campaign's recipient is cancelled with its batch: "
                            "DELETE /v1/batches/{batch_id}")  # fmt: skip
    # Only an id as minted reaches Redis: any other text could name another key.
    valid = is_message_id(message_id)
    found = web_context().stores.schedule.cancel_message(message_id) if valid else None
    if found is None:
        return problem(404, f"no message {message_id[:64]!r} (unknown, or past its retention)")
    if found not in (SCHEDULED, CANCELLED):
        return problem(409, f"the message is {found} already; only a scheduled one can be "
                            "cancelled")  # fmt: skip
    return jsonify(id=message_id, status=CANCELLED)


@bp.delete("/v1/batches/<campaign_id>")
@bearer_required
def cancel_campaign(campaign_id: str) -> Response:
    """Cancel a campaign that has not started: `cancelled`, nothing of it sent.

    A scheduled one leaves the schedule; a queued one none of whose chunks has started is
    cancelled by the campaign store, atomically with a chunk's start.
    """
    stores = web_context().stores
    valid = is_campaign_id(campaign_id)
    found = stores.schedule.cancel_campaign(campaign_id) if valid else None
    if found == "queued" and stores.campaigns.cancel(campaign_id):
        found = CANCELLED
    elif found == "queued":  # a chunk started first
        found = stores.campaigns.state(campaign_id)
    if found is None:
        return problem(404, f"no campaign {campaign_id[:64]!r} (unknown, or past its retention)")
    if found not in (SCHEDULED, CANCELLED):
        return problem(409, f"the campaign is {found} already; only one that has not started "
                            "can be cancelled")  # fmt: skip
    return jsonify(id=campaign_id, state=CANCELLED)
