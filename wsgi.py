"""The WSGI entry point: `gunicorn wsgi:app`."""

from notifier.errors import ConfigError
from notifier.web import create_app

try:
    app = create_app()
except ConfigError as exc:
    raise SystemExit(f"notifier: {exc}") from None
