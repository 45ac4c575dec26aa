"""Putting accepted messages on the broker: the hand-off between the intake and the workers."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from notifier.batches import ABORTED, QUEUED, BatchStore
from notifier.errors import BrokerUnavailable
from notifier.state import MessageState

log = logging.getLogger(__name__)

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


class Enqueuer:
    """Records a message as queued and publishes its task; answers only once both are done."""

    def __init__(self, state: MessageState, publish: Publish) -> None:
        self._state = state
        self._publish = publish

    def enqueue(self, message: dict[str, Any], message_id: str | None = None) -> str:
        """Queue one validated message and return its id.

        Raises:
            BrokerUnavailable: Redis could not be reached; nothing was queued.
        """
        message_id = message_id or new_message_id()
        payload = task_payload(message_id, message)
        try:
            self._state.record_queued(message_id)
            self._publish(payload)
        except Exception as exc:
            log.warning("broker unavailable, message refused: %s", type(exc).__name__)
            # Redis may be down as well; then the record expires on its own.
            with contextlib.suppress(Exception):
                self._state.discard(message_id)
            raise BrokerUnavailable("the message broker is unavailable") from exc
        return message_id


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


class BatchEnqueuer:
    """Queues a campaign as chunk tasks; its chunks wait until every one of them is queued."""

    def __init__(self, batches: BatchStore, publish_many: PublishMany) -> None:
        self._batches = batches
        self._publish_many = publish_many

    def enqueue(self, batch: dict[str, Any], batch_id: str | None = None) -> tuple[str, int]:
        """Queue a validated batch; return its id and recipient count.

        Raises:
            BrokerUnavailable: not every chunk could be queued; none will be sent.
        """
        batch_id = batch_id or new_message_id()
        chunks = chunk_payloads(batch_id, batch)
        count = len(batch["recipients"])
        try:
            self._batches.create(batch_id, batch["template_id"], count, len(chunks))
            self._publish_many(chunks)
            self._batches.mark(batch_id, QUEUED)
        except Exception as exc:
            log.warning("broker unavailable, batch refused: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                self._batches.mark(batch_id, ABORTED)
            raise BrokerUnavailable("the message broker is unavailable") from exc
        return batch_id, count


def celery_chunk_publisher() -> PublishMany:
    """Publish chunk tasks through one producer, so a big campaign reuses one connection."""
    from notifier.celery_app import app

    def publish_many(chunks: list[dict[str, Any]]) -> None:
        with app.producer_or_acquire() as producer:
            for chunk in chunks:
                app.send_task(CHUNK_TASK, args=(chunk,), queue=CAMPAIGNS_QUEUE, producer=producer)

    return publish_many
