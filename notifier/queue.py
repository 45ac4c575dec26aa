"""Putting accepted messages on the broker: the hand-off between the intake and the workers."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from notifier.errors import BrokerUnavailable
from notifier.state import MessageState

log = logging.getLogger(__name__)

MESSAGES_QUEUE = "notifier.messages"
SEND_TASK = "notifier.send_template"

Publish = Callable[[dict[str, Any]], None]


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
