"""The Celery application: the target of `celery -A notifier.broker.app`."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, signals

from notifier import logs
from notifier.broker.envelopes import QUEUED_AT, args_summary
from notifier.config import current, exit_on
from notifier.errors import ConfigError

app = Celery("notifier")
app.config_from_object("celeryconfig")


@signals.worker_init.connect
def _check_worker_settings(**_: Any) -> None:
    """Stop a worker that could not reach WeChat before it takes any message."""
    try:
        current().require_worker()
    except ConfigError as exc:
        exit_on(exc)


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_: Any) -> None:
    logs.install(logger)


@signals.before_task_publish.connect
def _redact_task_args(
    sender: str | None = None, body: Any = None, headers: dict[str, Any] | None = None, **_: Any
) -> None:
    """Name only the message or campaign id in what Celery publishes for our tasks.

    Celery copies a repr of the arguments (a follower's openid, the template data) into
    each message's headers, and from there into Flower and the worker's events. Intake's
    own envelopes say only the id (notifier.broker.envelopes); this does the same for everything
    published through Celery: retries, replays, re-publishes.
    """
    if headers is None or not (sender or "").startswith("notifier."):
        return
    args = body[0] if isinstance(body, tuple | list) and body else ()
    headers["argsrepr"] = args_summary(args)
    headers["kwargsrepr"] = "{}"
    headers[QUEUED_AT] = round(time.time(), 3)
