"""Flower, as the Procfile runs it, reads the queues on either broker transport.

Flower counts a queue's tasks straight from Redis, and only for a `redis://` broker URL:
with notifier's transport selected by class path, the URL it got was
`notifier.broker.transport:Transport://...`, and its queue pages answered 404.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK, MESSAGES_QUEUE
from notifier.devtools.redis_server import free_port
from tests.integration.conftest import Process, Stack, wait_for

ROOT = Path(__file__).parents[2]
AUTH = ("ops", "flower-test-password")


def flower_command(port: int) -> list[str]:
    """The Procfile's `flower:` line on `port`, run by this interpreter's Celery."""
    line = next(
        line.removeprefix("flower:")
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("flower:")
    )
    args = shlex.split(line.replace("${FLOWER_PORT:-5555}", str(port)))
    if args[0] == "exec":
        args = args[1:]
    assert args[0] == "celery" and not any("$" in arg for arg in args), line
    return [sys.executable, "-m", "celery", *args[1:]]


@pytest.fixture(params=["fast", "kombu"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Redis and the single-message worker on the BROKER_TRANSPORT of the test's parameter."""
    running = Stack(tmp_path, BROKER_TRANSPORT=request.param)
    try:
        running.redis.start()
        running.start_worker()
        yield running
    finally:
        running.stop()


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, auth=AUTH, timeout=5)
    except requests.RequestException:
        return None


def _lengths(flower: str) -> dict[str, int]:
    response = _get(f"{flower}/api/queues/length")
    assert response is not None and response.status_code == 200, response and response.text
    return {queue["name"]: queue["messages"] for queue in response.json()["active_queues"]}


def _publish_chunks(stack: Stack, count: int) -> None:
    """Campaign tasks published through the Celery app, as the campaign API does."""
    code = (
        "from notifier.broker.app import app\n"
        f"for n in range({count}):\n"
        f"    app.send_task({CHUNK_TASK!r}, args=({{'batch': f'b{{n}}'}},), "
        f"queue={CAMPAIGNS_QUEUE!r})\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=stack.env(), cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_flower_shows_the_queues_and_their_lengths(stack: Stack) -> None:
    port = free_port()
    flower = f"http://127.0.0.1:{port}"
    # Flower lists the queues of the workers it has seen, gone or not: a campaign worker
    # runs while Flower starts, then stops, so its queue fills with nobody taking from it.
    campaigns = stack.start_worker("campaigns", CAMPAIGNS_QUEUE)
    process: Process = stack.spawn("flower", flower_command(port), FLOWER_BASIC_AUTH=":".join(AUTH))

    def answers() -> Any:
        assert process.popen is not None and process.popen.poll() is None, process.output()
        response = _get(f"{flower}/healthcheck")
        return response is not None and response.ok

    wait_for(answers, what="Flower to answer")
    wait_for(lambda: {MESSAGES_QUEUE, CAMPAIGNS_QUEUE} <= set(_lengths(flower)),
             what="Flower to list both queues")  # fmt: skip
    campaigns.stop()
    _publish_chunks(stack, 3)

    expected = {MESSAGES_QUEUE: 0, CAMPAIGNS_QUEUE: 3}
    wait_for(lambda: _lengths(flower) == expected, timeout=10, what=f"lengths {expected}")

    page = _get(f"{flower}/broker")
    assert page is not None and page.status_code == 200
    assert "redis://" in page.text and "notifier.broker.transport" not in page.text
    assert MESSAGES_QUEUE in page.text and CAMPAIGNS_QUEUE in page.text
