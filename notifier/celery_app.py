"""The Celery application: the target of `celery -A notifier.celery_app`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from notifier import logs
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
