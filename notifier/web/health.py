"""Liveness and readiness: whether to restart the process, and whether to send it requests."""

from __future__ import annotations

import redis
from flask import Flask, Response, jsonify
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifier.web.problems import problem

# Seconds Redis has to connect and to answer PING before the process counts as not ready.
READY_TIMEOUT = 1.0


def install(app: Flask, redis_url: str) -> None:
    """Add GET /healthz (touches nothing) and GET /readyz (Redis answers PING in time)."""
    # A client of its own: the stores' retry and wait for Redis, and a probe must not.
    probe = redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=READY_TIMEOUT,
        socket_timeout=READY_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers; no dependency is touched."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Response:
        """Readiness: without Redis no request can be accepted, so send none here."""
        try:
            probe.ping()
        except redis.RedisError as exc:
            # The class alone tells refused from timed out, and keeps Redis's address inside.
            reason = f"redis did not answer PING within {READY_TIMEOUT:g} s: {type(exc).__name__}"
            return problem(503, reason)
        return jsonify(status="ready")
