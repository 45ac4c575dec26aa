"""Liveness and readiness: /healthz touches nothing, /readyz is ready only while Redis answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from notifier.config import Settings
from notifier.devtools.redis_server import RedisServer, free_port
from notifier.processes import WEB_PORT
from notifier.web.app import create_app
from notifier.web.health import READY_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def client_for(settings: Settings, redis_url: str) -> FlaskClient:
    return create_app(replace(settings, redis_url=redis_url)).test_client()


def test_ready_while_redis_answers(settings: Settings) -> None:
    response = client_for(settings, settings.redis_url).get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_not_ready_without_redis_but_still_alive(settings: Settings) -> None:
    client = client_for(settings, f"redis://127.0.0.1:{free_port()}/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert response.get_json()["detail"] == (
        "redis did not answer PING within 1 s: ConnectionError"
    )
    assert client.get("/healthz").status_code == 200


def test_not_ready_once_redis_stops_and_ready_again_once_it_is_back(
    settings: Settings, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path, appendonly=False).start()
    try:
        client = client_for(settings, server.url)
        assert client.get("/readyz").status_code == 200
        server.stop()
        assert client.get("/readyz").status_code == 503
        server = RedisServer(tmp_path, port=server.port, appendonly=False).start()
        # The first probe after the restart may find the old connection closed.
        answers = [client.get("/readyz").status_code for _ in range(2)]
        assert answers[-1] == 200
    finally:
        server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers, like a Redis that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_redis_that_does_not_answer_is_not_ready_within_the_timeout(
    settings: Settings, silent_port: int
) -> None:
    client = client_for(settings, f"redis://127.0.0.1:{silent_port}/0")
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "TimeoutError" in response.get_json()["detail"]
    assert READY_TIMEOUT <= elapsed < READY_TIMEOUT + 1.0, "no retry, no wait past the timeout"


def test_compose_s_health_check_passes_only_while_the_web_is_ready(settings: Settings) -> None:
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    test = web["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    url = f"http://127.0.0.1:{WEB_PORT}/readyz"
    assert url in test[3]
    for redis_url, status in ((settings.redis_url, 0), (f"redis://127.0.0.1:{free_port()}/0", 1)):
        server = make_server("127.0.0.1", 0, create_app(replace(settings, redis_url=redis_url)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            check = test[3].replace(url, f"http://127.0.0.1:{server.server_port}/readyz")
            ran = subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=20)
        finally:
            server.shutdown()
        assert ran.returncode == status, ran.stderr.decode()
