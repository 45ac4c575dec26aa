"""The Flask receiver: built from settings, so tests and processes assemble it the same way."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from notifier import logs
from notifier.config import Settings, current
from notifier.signature import Verifier
from notifier.store import unfinished
from notifier.store.admission import Admission
from notifier.store.stores import open_stores
from notifier.web import (
    admin,
    batch_replay,
    callback,
    campaigns,
    cancel,
    health,
    metrics,
    openapi,
    status,
    tracing,
)
from notifier.web import messages as intake
from notifier.web.auth import BearerTokens
from notifier.web.context import WebContext
from notifier.web.deadline import BodyDeadline
from notifier.web.problems import problem
from notifier.wechat.receipts import CallbackVerifier

log = logging.getLogger(__name__)

# Redis refusing a write it takes when healthy: redis-py raises its own classes for out of
# memory and a read-only replica after a failover (LOADING comes as a ConnectionError), and
# a plain ResponseError that keeps its code for a failed snapshot, a busy script or too
# few replicas. Each passes; the request is answered 503, never half done.
_REFUSALS = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError,
             redis.exceptions.MasterDownError)  # fmt: skip
_REFUSAL_CODES = ("MISCONF ", "BUSY ", "NOREPLICAS ")
# Redis before 7 wraps a refusal met inside a script in a plain error ("Error running script
# ...: -OOM command not allowed ..."): the refusal's code follows a dash.
_WRAPPED_CODES = tuple(
    f": -{code}" for code in ("OOM ", "READONLY ", "MASTERDOWN ", *_REFUSAL_CODES)
)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the receiver from settings (the environment's when not given)."""
    settings = (settings or current()).require_web()
    # gunicorn's loggers keep their own handlers: its error log and access log (when on).
    logs.install(level=settings.log_level, fmt=settings.log_format, role="web",
                 also=("gunicorn.error", "gunicorn.access"))  # fmt: skip
    if not settings.api_tokens:
        log.warning("API_TOKENS is not set: the status and operator endpoints refuse everyone")
    unfinished.prepare()
    app = Flask("notifier")
    # One byte of headroom: a chunked body is cut at this limit, and read_body() needs to
    # tell a body of exactly the limit from a longer one.
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_body_bytes, settings.max_batch_bytes) + 1
    stores = open_stores(settings, socket_timeout=2)
    app.extensions["notifier"] = WebContext(
        settings=settings,
        stores=stores,
        verifier=Verifier(settings.webhook_secrets),
        admission=Admission(stores.connection, settings.idempotency_ttl, settings.status_retention),
        bearer=BearerTokens(settings.api_tokens),
        callback=_callback_verifier(settings),
    )
    blueprints = (intake.bp, campaigns.bp, status.bp, cancel.bp, admin.bp, callback.bp, metrics.bp)
    for blueprint in (*blueprints, batch_replay.bp):
        app.register_blueprint(blueprint)
    health.install(app, settings.redis_url)
    openapi.install(app, settings)
    tracing.install(app)
    app.wsgi_app = BodyDeadline(app.wsgi_app, settings.body_timeout)  # type: ignore[method-assign]

    @app.errorhandler(HTTPException)
    def http_problem(exc: HTTPException) -> Response:
        detail = exc.description or exc.name
        if exc.code == 413:
            path = request.path.rstrip("/")
            limit = settings.max_batch_bytes if path.endswith("/batch") else settings.max_body_bytes
            if path == callback.PATH:
                limit = callback.MAX_BODY_BYTES  # the callback's own, whatever the intake's
            detail = f"body is larger than {limit} bytes"
        return problem(exc.code or 500, detail)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def redis_down(exc: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", type(exc).__name__)
        return problem(503, "the message store is unavailable; try again")

    @app.errorhandler(redis.ResponseError)
    def redis_refuses(exc: redis.ResponseError) -> Response:
        if not _refused(exc):
            return unexpected(exc)
        # The name and code only: redis-py's text can quote a command's arguments.
        log.warning("redis refused a write: %s", _refusal_code(exc))
        return problem(503, "the message store refuses writes for now; try again")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return problem(500, "internal error; the request was not queued")

    return app


def _callback_verifier(settings: Settings) -> CallbackVerifier | None:
    """The callback's verifier, or None when WECHAT_CALLBACK_TOKEN is not configured."""
    if not settings.wechat_callback_token:
        return None
    return CallbackVerifier(
        settings.wechat_callback_token, settings.wechat_app_id, settings.wechat_encoding_aes_key
    )


def _refused(exc: redis.ResponseError) -> bool:
    """Whether Redis refused a write it takes when healthy, raised directly or in a script."""
    text = str(exc)
    return (
        isinstance(exc, _REFUSALS)
        or text.startswith(_REFUSAL_CODES)
        or any(code in text for code in _WRAPPED_CODES)
    )


def _refusal_code(exc: redis.ResponseError) -> str:
    """The class and Redis's code only: redis-py's text can quote a command's arguments."""
    text = str(exc)
    wrapped = [code[3:].strip() for code in _WRAPPED_CODES if code in text]
    return f"{type(exc).__name__} {wrapped[0] if wrapped else text.split(' ')[0]}"
