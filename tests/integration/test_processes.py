"""The deployment files: Procfile processes start and deliver, compose agrees, bad config stops."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from notifier.broker.queues import CAMPAIGNS_QUEUE, MESSAGES_QUEUE
from notifier.devtools.devstack import web_command, worker_pool
from notifier.devtools.measures import ok as answers
from notifier.devtools.redis_server import free_port
from tests.integration.conftest import Stack, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_compose_runs_the_procfile_commands_against_persistent_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, command in procfile().items():
        shell = services[name]["command"]
        assert shell[:2] == ["sh", "-c"], name
        assert shell[2].replace("$$", "$") == command, name
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert {"web", "worker", "beat", "flower", "redis"} <= set(services)


@pytest.mark.parametrize(
    ("process", "queue"), [("worker", MESSAGES_QUEUE), ("campaigns", CAMPAIGNS_QUEUE)]
)
def test_the_dev_stack_bench_and_tests_run_each_queue_on_the_procfiles_pool(
    process: str, queue: str
) -> None:
    flags = worker_pool(queue)
    line = procfile()[process]
    assert f"--queues {queue}" in line
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        assert f"{flag} {value}" in line, (process, flag)


def test_beat_refreshes_the_token_every_6000_seconds() -> None:
    from notifier.broker.app import app

    entry = app.conf.beat_schedule["refresh-access-token"]
    assert entry["task"] == "notifier.refresh_token"
    assert entry["schedule"] == 6000.0
    app.loader.import_default_modules()
    assert {"notifier.refresh_token", "notifier.send_template"} <= set(app.tasks)


def test_the_procfile_processes_deliver_a_message(stack: Stack) -> None:
    web_port, flower_port = free_port(), free_port()
    env = stack.env(PORT=str(web_port), FLOWER_PORT=str(flower_port), WORKER_CONCURRENCY="4",
                    CAMPAIGN_CONCURRENCY="8", WEB_CONCURRENCY="1", PATH=f"{BIN}:{os.environ['PATH']}")  # fmt: skip
    children = {
        name: subprocess.Popen(["sh", "-c", command], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, command in procfile().items()
    }  # fmt: skip
    try:
        web = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: _ok(f"{web}/healthz"), what="Procfile web")
        wait_for(lambda: _ok(f"http://127.0.0.1:{flower_port}/healthcheck"), what="Procfile flower")
        # The module stack's own worker is stopped, so only the Procfile worker can send.
        stack.processes["worker"].stop()
        from notifier.client import NotifierClient, template_message

        response = NotifierClient(web, stack.secret).post_message(
            template_message("oProcfileUser1", "TPL_PROC", {"thing1": "procfile"})
        )
        assert response.status_code == 202
        message_id = response.json()["id"]
        assert stack.wait_delivered([message_id]) == {message_id: 1}
        # No campaign worker runs in the module stack: only the Procfile's (gevent) one can send this.
        people = [{"touser": f"oProcfileBulk{i:03d}"} for i in range(30)]
        batch = {"template_id": "TPL_PROC", "data": {"k": {"value": "v"}}, "recipients": people}
        campaign_id = NotifierClient(web, stack.secret).post_batch(batch).json()["batch_id"]
        ids = [f"{campaign_id}-{i}" for i in range(30)]
        assert set(stack.wait_delivered(ids).values()) == {1}
        assert all(child.poll() is None for child in children.values())
    finally:
        for child in children.values():
            child.terminate()
        for child in children.values():
            child.wait(timeout=20)
        stack.start_worker()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@pytest.mark.parametrize(
    ("args", "unset", "line"),
    [
        (["-m", "celery", "-A", "notifier.broker.app", "worker", "--pool", "solo"], "WECHAT_APP_ID",
         "notifier: WECHAT_APP_ID is not set"),
        (["-m", "gunicorn", "wsgi:app", "--bind", "127.0.0.1:0"], "WEBHOOK_SECRET",
         "notifier: WEBHOOK_SECRET is not set"),
    ],
)  # fmt: skip
def test_a_process_missing_a_setting_stops_with_one_line(
    args: list[str], unset: str, line: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"WECHAT_APP_ID", "WEBHOOK_SECRET"}}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    result = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert re.search(rf"^{re.escape(line)}", result.stderr, re.M), result.stderr[-2000:]


def test_the_send_rate_limit_comes_from_the_environment() -> None:
    code = "import notifier.worker.tasks as t; print(t.send_template.rate_limit, t.send_template.max_retries)"
    env = {**os.environ, "SEND_RATE_LIMIT": "25/s", "SEND_MAX_RETRIES": "3"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["25/s", "3"], result.stderr


def test_the_web_the_project_starts_itself_leaves_gunicorns_control_socket_alone(
    tmp_path: Path,
) -> None:
    """The dev stack, the bench and these tests run gunicorn next to whatever else runs."""
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0",
           "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}  # fmt: skip
    web = subprocess.Popen(web_command(port, workers=1), env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), what="gunicorn")
        assert not list(tmp_path.rglob("*.ctl"))  # gunicorn's default: ~/.gunicorn/gunicorn.ctl
    finally:
        web.terminate()
        web.wait(timeout=30)
