"""JSON logs follow one message across processes by its ids; /readyz follows Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from notifier.client import template_message
from notifier.signature import signed_headers
from tests.integration.conftest import Stack, wait_for

TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("logs"), LOG_FORMAT="json")
    stack.web_flags = ("--access-logfile", "-")  # as the Procfile runs it
    with stack.running(beat=True) as running:
        yield running


def json_lines(stack: Stack, process: str) -> list[dict[str, Any]]:
    """The process's JSON lines (a Celery banner or gunicorn's master lines are not)."""
    found = []
    for line in stack.processes[process].output().splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def about(lines: list[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message_id") == message_id]


def test_one_message_is_followed_by_its_id_and_trace_through_web_and_worker(
    stack: Stack,
) -> None:
    body = json.dumps(template_message("oTracedUser1", "TPL_IT", {"thing1": "traced"})).encode()
    headers = signed_headers(stack.secret, "msg_traced_1", body)
    headers |= {
        "Content-Type": "application/json",
        "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
    }
    response = requests.post(f"{stack.web}/v1/messages", data=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    assert response.headers["traceparent"].startswith(f"00-{TRACE}-")
    message_id = response.json()["id"]
    assert stack.wait_delivered([message_id]) == {message_id: 1}

    def worker_lines() -> list[dict[str, Any]]:
        lines = about(json_lines(stack, "worker"), message_id)
        return lines if any("succeeded" in line["message"] for line in lines) else []

    worker = wait_for(worker_lines, 30, "the worker's lines about the message")
    web = wait_for(lambda: about(json_lines(stack, "web"), message_id), 10, "the web's line")
    # The web's access line for the POST, and the worker's own and Celery's lines.
    assert [(line["logger"], line["role"]) for line in web] == [("gunicorn.access", "web")]
    assert web[0]["webhook_id"] == "msg_traced_1" and "POST /v1/messages" in web[0]["message"]
    assert {line["role"] for line in worker} == {"worker"}
    assert {"notifier.worker.sender", "celery.app.trace"} <= {line["logger"] for line in worker}
    assert {line["task_id"] for line in worker} == {message_id}
    assert {line["trace_id"] for line in web + worker} == {TRACE}
    [sent] = [line for line in worker if line["logger"] == "notifier.worker.sender"]
    assert sent["attempt"] == 1 and "sent" in sent["message"]
    for line in web + worker:
        assert {"timestamp", "level", "logger", "role", "message"} <= set(line)
    # Beat writes the same lines, Celery's own included, under its own role.
    beat = wait_for(lambda: json_lines(stack, "beat"), 30, "beat's JSON lines")
    assert {line["role"] for line in beat} == {"beat"}


def test_readyz_follows_redis_down_and_back(stack: Stack) -> None:
    def readiness() -> int:
        return requests.get(f"{stack.web}/readyz", timeout=5).status_code

    assert readiness() == 200
    while_down: dict[str, Any] = {}

    def down() -> None:
        stopped = time.monotonic()
        wait_for(lambda: readiness() == 503, 5, "/readyz to answer 503")
        while_down["after"] = time.monotonic() - stopped
        while_down["problem"] = requests.get(f"{stack.web}/readyz", timeout=5).json()
        assert requests.get(f"{stack.web}/healthz", timeout=5).status_code == 200

    stack.restart_redis(down)
    assert while_down["after"] < 5
    assert "redis did not answer PING" in while_down["problem"]["detail"]
    wait_for(lambda: readiness() == 200, 30, "/readyz to answer 200 again")
