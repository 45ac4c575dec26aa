"""Operator endpoints: list and replay dead letters, see and lift the daily-quota pause."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from notifier.broker.queues import is_message_id
from notifier.store.messages import iso
from notifier.web.auth import bearer_required
from notifier.web.context import web_context
from notifier.web.problems import problem

bp = Blueprint("admin", __name__)


@bp.get("/v1/dead-letters")
@bearer_required
def list_dead_letters() -> Response:
    """Failed and dead messages with payload, errcode, errmsg and attempts, oldest first."""
    limit = min(max(request.args.get("limit", 100, type=int) or 100, 1), 1000)
    offset = min(max(request.args.get("offset", 0, type=int) or 0, 0), 10**9)
    svc = web_context()
    records = svc.stores.replayer.list(svc.stores.messages.dead_index, limit, offset)
    return jsonify(
        total=svc.stores.messages.count(svc.stores.messages.dead_index),
        items=[r.as_dict(with_payload=True) for r in records],
    )


@bp.post("/v1/dead-letters/<message_id>/replay")
@bearer_required
def replay_one(message_id: str) -> Response | tuple[Response, int]:
    """Queue one dead letter again under its own id."""
    # Only an id as minted reaches Redis: any other text could name another key.
    if not is_message_id(message_id) or not web_context().stores.replayer.replay(message_id):
        return problem(404, f"{message_id[:64]!r} is not a failed, dead or deferred message")
    return jsonify(id=message_id, status="queued"), 202


@bp.post("/v1/dead-letters/replay")
@bearer_required
def replay_all() -> tuple[Response, int]:
    """Queue every dead letter again."""
    svc = web_context()
    return jsonify(replayed=svc.stores.replayer.replay_all(svc.stores.messages.dead_index)), 202


@bp.get("/v1/quota")
@bearer_required
def quota_status() -> Response | tuple[Response, int]:
    """Whether sending is paused for the daily quota, and how many messages wait."""
    svc = web_context()
    if svc.stores.quota is None:
        return problem(503, "WECHAT_APP_ID is not set on the web process; the pause is per account")
    pause = svc.stores.quota.paused()
    view: dict[str, object] = {
        "paused": pause is not None,
        "deferred": svc.stores.messages.count(svc.stores.messages.deferred_index),
        "deferred_campaign_chunks": svc.stores.deferred.count(),
    }
    if pause:
        view.update(since=iso(pause["since"]), until=iso(pause["until"]), errmsg=pause["errmsg"])
    return jsonify(view)


@bp.post("/v1/quota/resume")
@bearer_required
def quota_resume() -> Response | tuple[Response, int]:
    """Lift the pause early and queue the deferred messages again."""
    svc = web_context()
    if svc.stores.quota is None:
        return problem(503, "WECHAT_APP_ID is not set on the web process")
    lifted = svc.stores.quota.resume()
    resumed = svc.stores.replayer.resume_deferred("resumed by an operator")
    return jsonify(lifted=lifted, resumed=resumed), 202
