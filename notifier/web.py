"""The Flask receiver: built from settings, so tests and processes assemble it the same way."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from notifier import intake, logs
from notifier.config import Settings, current
from notifier.problems import problem
from notifier.queue import Enqueuer, Publish, celery_publisher
from notifier.signature import Verifier
from notifier.state import MessageState

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, publish: Publish | None = None) -> Flask:
    """Build the receiver; `publish` defaults to the Celery broker."""
    settings = (settings or current()).require_web()
    logs.install(level=settings.log_level)
    app = Flask("notifier")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    connection = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=10
    )
    app.extensions["notifier.redis"] = connection
    app.extensions["notifier.verifier"] = Verifier(settings.webhook_secrets)
    app.extensions["notifier.enqueuer"] = Enqueuer(
        MessageState(connection), publish or celery_publisher()
    )
    app.register_blueprint(intake.bp)

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers; no dependency is touched."""
        return jsonify(status="ok")

    @app.errorhandler(HTTPException)
    def http_problem(exc: HTTPException) -> Response:
        detail = exc.description or exc.name
        if exc.code == 413:
            detail = f"body is larger than {settings.max_body_bytes} bytes"
        return problem(exc.code or 500, detail)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return problem(500, "internal error; the request was not queued")

    return app
