"""Queue and task names, and the payloads a message or a campaign becomes on the queues."""

from __future__ import annotations

import re
import uuid
from typing import Any

MESSAGES_QUEUE = "notifier.messages"
CAMPAIGNS_QUEUE = "notifier.campaigns"
# Beat's tasks: never behind a backlog of messages.
CONTROL_QUEUE = "notifier.control"
SEND_TASK = "notifier.send_template"
CHUNK_TASK = "notifier.send_chunk"
CONTROL_TASKS = ("notifier.reconcile", "notifier.refresh_token", "notifier.resume_deferred")
# Recipients per campaign chunk: its task envelope (about 1.2 KB) is shared by all of them.
CHUNK_SIZE = 100
# What a campaign's recipients share: carried once per chunk, and kept once per campaign
# for a replay of its failures.
SHARED_FIELDS = ("template_id", "data", "url", "miniprogram")
# Every id new_message_id makes, and nothing else: 32 lower-case hex digits. Messages and
# campaigns share it; an id from outside is checked against it before it names a Redis key.
MESSAGE_ID = re.compile(r"[0-9a-f]{32}")


def new_message_id() -> str:
    """Make a message id; its hex form doubles as WeChat's client_msg_id."""
    return uuid.uuid4().hex


def is_message_id(text: str) -> bool:
    """Whether `text` could have been made by new_message_id: other text names no record."""
    return MESSAGE_ID.fullmatch(text) is not None


def task_payload(message_id: str, message: dict[str, Any]) -> dict[str, Any]:
    """The message as its record keeps it: the WeChat body plus our id.

    `client_msg_id` is the client's own when given, else the message id, so a
    second send of the same message is shown to the follower once.
    """
    payload = {"id": message_id, **message}
    payload.setdefault("client_msg_id", message_id)
    return payload


def chunk_payloads(campaign_id: str, campaign: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a validated campaign into chunks, stored per campaign: shared fields once per chunk."""
    shared: dict[str, Any] = {k: campaign[k] for k in SHARED_FIELDS if k in campaign}
    recipients = [
        [index, r["touser"], r.get("data")] for index, r in enumerate(campaign["recipients"])
    ]
    return [
        {"batch": campaign_id, **shared, "recipients": recipients[start : start + CHUNK_SIZE]}
        for start in range(0, len(recipients), CHUNK_SIZE)
    ]
