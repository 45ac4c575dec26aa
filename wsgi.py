"""The WSGI entry point: `gunicorn wsgi:app`."""

from notifier.config import exit_on
from notifier.errors import ConfigError
from notifier.web.app import create_app

try:
    app = create_app()
except ConfigError as exc:
    exit_on(exc)
