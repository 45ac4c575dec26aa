"""Putting accepted messages on the broker: the hand-off between the intake and the workers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

MESSAGES_QUEUE = "notifier.messages"
CAMPAIGNS_QUEUE = "notifier.campaigns"
SEND_TASK = "notifier.send_template"
CHUNK_TASK = "notifier.send_chunk"
# Recipients per campaign task: the task envelope (about 1.2 KB) is shared by all of them.
CHUNK_SIZE = 100

Publish = Callable[[dict[str, Any]], None]
PublishMany = Callable[[list[dict[str, Any]]], None]


def new_message_id() -> str:
    """Make a message id; its hex form doubles as WeChat's client_msg_id."""
    return uuid.uuid4().hex


def task_payload(message_id: str, message: dict[str, Any]) -> dict[str, Any]:
    """The plain-JSON argument of send_template: the WeChat body plus our id.

    `client_msg_id` is the client's own when given, else the message id, so a
    broker redelivery of the same task is shown to the follower once.
    """
    payload = {"id": message_id, **message}
    payload.setdefault("client_msg_id", message_id)
    return payload


def celery_publisher() -> Publish:
    """Publish through the Celery app, importing it only in processes that enqueue."""
    from notifier.celery_app import app

    def publish(payload: dict[str, Any]) -> None:
        app.send_task(SEND_TASK, args=(payload,), queue=MESSAGES_QUEUE)

    return publish


def chunk_payloads(batch_id: str, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a validated batch into send_chunk arguments: shared fields once per chunk."""
    shared: dict[str, Any] = {
        k: batch[k] for k in ("template_id", "data", "url", "miniprogram") if k in batch
    }
    recipients = [
        [index, r["touser"], r.get("data")] for index, r in enumerate(batch["recipients"])
    ]
    return [
        {"batch": batch_id, **shared, "recipients": recipients[start : start + CHUNK_SIZE]}
        for start in range(0, len(recipients), CHUNK_SIZE)
    ]


def celery_chunk_publisher() -> PublishMany:
    """Publish chunk tasks through one producer, so a big campaign reuses one connection."""
    from notifier.celery_app import app

    def publish_many(chunks: list[dict[str, Any]]) -> None:
        with app.producer_or_acquire() as producer:
            for chunk in chunks:
                app.send_task(CHUNK_TASK, args=(chunk,), queue=CAMPAIGNS_QUEUE, producer=producer)

    return publish_many
