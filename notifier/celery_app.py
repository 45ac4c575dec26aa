"""The Celery application: the target of `celery -A notifier.celery_app`."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery, signals

from notifier import logs
from notifier.config import current
from notifier.errors import ConfigError

app = Celery("notifier")
app.config_from_object("celeryconfig")


@signals.worker_init.connect
def _check_worker_settings(**_: Any) -> None:
    """Stop a worker that could not reach WeChat before it takes any message."""
    try:
        current().require_worker()
    except ConfigError as exc:
        print(f"notifier: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_: Any) -> None:
    logs.install(logger)
