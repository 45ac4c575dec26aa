"""Log redaction and correlation: secrets never reach a line, and each line names its work.

Every process logs through the handlers `install` sets up. In JSON (`LOG_FORMAT=json`) each
line is one object with the process's role and the fields of the unit of work it belongs
to: a web request or a Celery task binds them once (`start`, `bind`), and every ordinary
log call made while it runs carries them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_PATTERNS = [
    (re.compile(r"(access_token=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(secret=)[^&\s\"']+"), r"\1***"),
    (
        re.compile(r"([\"']?(?:access_token|secret|app_secret)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"),
        r"\1***",
    ),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), "whsec_***"),
]

# The fields a line may carry besides its own, in the order they are written: bound by the
# unit of work, or given to one call with `extra=`. No other extra reaches a line, so a
# library's extras (Celery's task results, say) never leak a follower's data.
FIELDS = ("message_id", "campaign_id", "webhook_id", "task_id", "trace_id", "attempt", "errcode")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Replaced whole, never changed in place: a request or task sees only what it bound.
_context: ContextVar[dict[str, Any] | None] = ContextVar("notifier_log_context", default=None)
# Which process writes: web, worker or beat; set once when the process sets up logging.
_role = {"name": "-"}


def redact(text: str) -> str:
    """Replace every token or secret in `text` with ***."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def start(**fields: Any) -> None:
    """Begin a unit of work (a request, a task): its fields replace all bound before."""
    _context.set({name: value for name, value in fields.items() if value is not None})


def bind(**fields: Any) -> None:
    """Add fields to the current unit of work, for every line it logs from now on."""
    added = {name: value for name, value in fields.items() if value is not None}
    _context.set({**(_context.get() or {}), **added})


def bound() -> dict[str, Any]:
    """The fields of the current unit of work."""
    return dict(_context.get() or {})


def set_role(role: str) -> None:
    """Name this process's role (web, worker, beat) on each of its JSON lines."""
    _role["name"] = role


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, so a log pipeline can find every line about one message."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "timestamp": when.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "role": _role["name"],
            "pid": record.process,
            "message": record.getMessage(),
        }
        context = _context.get() or {}
        for name in FIELDS:
            value = record.__dict__.get(name, context.get(name))
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Every value but a number masked as text before encoding, whatever the handler's
        # filters: no field, extra or traceback carries a secret out, and the line stays JSON.
        masked = {k: v if isinstance(v, int | float) else redact(str(v)) for k, v in line.items()}
        return json.dumps(masked, ensure_ascii=False)


def install(
    logger: logging.Logger | None = None,
    level: str = "INFO",
    fmt: str = "text",
    role: str | None = None,
    also: Iterable[str] = (),
) -> None:
    """Mask secrets on the handlers of `logger` (the root by default) and `also`; set the format."""
    target = logger or logging.getLogger()
    if role is not None:
        set_role(role)
    if logger is None and not target.handlers:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    handlers = [*target.handlers, *(h for name in also for h in logging.getLogger(name).handlers)]
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
        if fmt == "json":  # else each handler keeps its own text format
            handler.setFormatter(JsonFormatter())
    # urllib3 logs full URLs, query string and token included, at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
