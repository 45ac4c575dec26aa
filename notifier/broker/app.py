"""The Celery application: the target of `celery -A notifier.broker.app`."""

from __future__ import annotations

import logging
import time
from typing import Any

import click
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
def _set_up_logs(logger: logging.Logger, **_: Any) -> None:
    """Mask secrets in every Celery process, and write LOG_FORMAT's lines, Celery's own too."""
    # Called for the root, whose handlers carry Celery's loggers, and for the task logger,
    # which has a handler of its own.
    logs.install(logger, fmt=current().log_format, role=_role())


def _role() -> str:
    """The Celery command this process runs (worker, beat), as its lines name its role."""
    command = click.get_current_context(silent=True)
    return (command.info_name if command else None) or "celery"


@signals.task_prerun.connect
def _start_task_context(task_id: str = "", args: Any = None, **_: Any) -> None:
    """Every line a task logs names the task, and the message or campaign it works on."""
    # Our tasks' first argument names its work: {"id": message} or {"batch": campaign, ...}.
    work = args[0] if args and isinstance(args[0], dict) else {}
    logs.start(task_id=task_id, message_id=work.get("id"), campaign_id=work.get("batch"))


@signals.task_postrun.connect
def _end_task_context(**_: Any) -> None:
    """Lines between tasks belong to none: the next task starts its own context."""
    logs.start()


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
