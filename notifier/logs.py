"""Log redaction, so access tokens and secrets never reach a log line, whoever logs them."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    (re.compile(r"(access_token=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(secret=)[^&\s\"']+"), r"\1***"),
    (
        re.compile(r"([\"']?(?:access_token|secret|app_secret)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"),
        r"\1***",
    ),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), "whsec_***"),
]


def redact(text: str) -> str:
    """Replace every token or secret in `text` with ***."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


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


def install(logger: logging.Logger | None = None, level: str = "INFO") -> None:
    """Mask secrets on every handler of `logger` (the root by default); quiet URL loggers."""
    target = logger or logging.getLogger()
    if logger is None and not target.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # urllib3 logs full URLs, query string and token included, at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
