"""Real processes for integration tests: Redis, the fake WeChat, a Celery worker and the web app."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from notifier.client import NotifierClient, template_message
from notifier.devtools.devstack import web_command, worker_pool
from notifier.devtools.measures import ok as answers
from notifier.devtools.redis_server import RedisServer, free_port
from notifier.processes import WORKERS
from notifier.signature import new_secret
from notifier.store.keys import PREFIX, message_key

APP_ID, APP_SECRET = "wx_it_app", "it_secret"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `predicate` returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Process:
    """A child process whose output goes to a log file that a failing test can show."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def start(self) -> Process:
        # The log is appended to across restarts; this run's output starts here.
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def latest(self) -> str:
        """The output of the current run only."""
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def stop(self, kill: bool = False) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.kill() if kill else self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


class Stack:
    """The running stack plus helpers to drive and inspect it."""

    # More gunicorn options for the web (the Procfile's `--access-logfile -`, say).
    web_flags: tuple[str, ...] = ()

    def __init__(self, root: Path, **overrides: str) -> None:
        self.root = root
        self.overrides = overrides
        self.redis = RedisServer(root / "redis", appendonly=True)
        self.wechat_port, self.web_port = free_port(), free_port()
        self.secret = new_secret()
        self.wechat = f"http://127.0.0.1:{self.wechat_port}"
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.processes: dict[str, Process] = {}

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "WECHAT_APP_ID": APP_ID,
            "WECHAT_APP_SECRET": APP_SECRET,
            "WECHAT_API_BASE": self.wechat,
            "WEBHOOK_SECRET": self.secret,
            "WECHAT_READ_TIMEOUT": "1",
            "SEND_RETRY_BACKOFF_MAX": "1",
            "SEND_MAX_RETRIES": "4",
            "PORT": str(self.web_port),
            **self.overrides,
            **extra,
        }

    def spawn(self, name: str, args: list[str], **env: str) -> Process:
        process = Process(name, args, self.env(**env), self.root).start()
        self.processes[name] = process
        return process

    def start(self) -> Stack:
        self.redis.start()
        py = sys.executable
        self.spawn("wechat", [py, "-m", "notifier.devtools.fake_wechat", "--port", str(self.wechat_port),
                              "--app-id", APP_ID, "--app-secret", APP_SECRET])  # fmt: skip
        self.start_worker()
        self.spawn("web", [*web_command(self.web_port, workers=1), *self.web_flags])
        wait_for(lambda: answers(f"{self.wechat}/healthz"), what="the fake WeChat")
        wait_for(lambda: answers(f"{self.web}/healthz"), what="the web app")
        return self

    @contextlib.contextmanager
    def running(self, beat: bool = False) -> Iterator[Stack]:
        """The stack started (with beat, if asked), and stopped however the block ends."""
        try:
            self.start()
            if beat:
                self.start_beat()
            yield self
        finally:
            self.stop()

    def restart_redis(self, down: Callable[[], None] = lambda: None) -> None:
        """Stop Redis (flushing its append-only file), run `down`, start it on the same port."""
        self.redis.stop()
        down()
        self.redis = RedisServer(self.redis.data_dir, port=self.redis.port, appendonly=True).start()

    def start_beat(self) -> Process:
        """Beat, and a worker of its queue, for the token refresh and the reconciler's passes.

        The Procfile's campaign workers run beat's tasks; here a worker of their own does,
        so a test can kill and restart campaign workers without stopping the reconciler.
        """
        schedule = str(self.root / "celerybeat-schedule")
        self.start_worker("control", queue="notifier.control")
        return self.spawn("beat", [sys.executable, "-m", "celery", "-A", "notifier.broker.app",
                                   "beat", "--loglevel", "INFO", "--schedule", schedule])  # fmt: skip

    def tasks_of(self, task_id: str) -> list[str]:
        """Where a task with this id waits: its queue, or a worker's unacknowledged records."""
        client = self.redis_client()
        try:
            found = [f"queue {queue}" for queue in ("notifier.messages", "notifier.campaigns")
                     for raw in client.lrange(queue, 0, -1) if task_id in raw.decode()]  # fmt: skip
            found += [f"unacked {tag.decode()}" for tag, raw in client.hgetall("unacked").items()
                      if task_id in raw.decode()]  # fmt: skip
        finally:
            client.close()
        return found

    def redis_client(self) -> redis.Redis:
        """A client of the stack's Redis (close it after use)."""
        return redis.Redis.from_url(self.redis.url)

    def start_worker(self, name: str = "worker", queue: str = "notifier.messages") -> Process:
        process = self.spawn(
            name,
            [sys.executable, "-m", "celery", "-A", "notifier.broker.app", "worker",
             *(worker_pool(queue) if queue in WORKERS else ["--pool", "threads"]),
             "--concurrency", "8", "--queues", queue, "--loglevel", "INFO",
             "--without-mingle", "--without-gossip", "--hostname", f"{name}@%h"],
        )  # fmt: skip
        wait_for(lambda: " ready." in process.latest(), what=f"{name} to be ready")
        return process

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.stop()
        self.redis.stop()

    # Driving and inspecting -------------------------------------------------
    def client(self) -> NotifierClient:
        return NotifierClient(self.web, self.secret)

    def post(self, touser: str = "oFollower0001", **fields: str) -> str:
        message = template_message(touser, "TPL_IT", fields or {"thing1": "hello"})
        response = self.client().post_message(message)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def post_many(self, count: int, prefix: str) -> list[str]:
        """Post `count` messages to distinct followers, eight at a time; return their ids."""
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda i: self.post(touser=f"o{prefix}{i:06d}"), range(count)))

    def assert_each_sent_once(self, ids: list[str], timeout: float) -> None:
        """Every message reached the fake exactly once, and its status says sent."""
        counts = self.wait_delivered(ids, timeout=timeout)
        twice = {i: n for i, n in counts.items() if n != 1}
        assert not twice, f"delivered more than once: {twice}"
        wait_for(lambda: all(self.status(i) == "sent" for i in ids), 30, "every status sent")

    def fake(self, method: str, path: str, payload: Any = None) -> Any:
        response = requests.request(method, f"{self.wechat}{path}", json=payload, timeout=5)
        response.raise_for_status()
        return response.json()

    def delivered(self) -> list[dict[str, Any]]:
        return list(self.fake("GET", "/_fake/messages")["messages"])

    def deliveries_of(self, ids: list[str]) -> dict[str, int]:
        counts = dict.fromkeys(ids, 0)
        for message in self.delivered():
            if message.get("client_msg_id") in counts:
                counts[message["client_msg_id"]] += 1
        return counts

    def wait_delivered(self, ids: list[str], timeout: float = 60) -> dict[str, int]:
        wait_for(lambda: all(self.deliveries_of(ids).values()), timeout, f"{len(ids)} deliveries")
        return self.deliveries_of(ids)

    def status(self, message_id: str) -> str | None:
        return self.field(message_key(PREFIX, message_id), "status")

    def field(self, key: str, name: str) -> str | None:
        """One field of a hash in the stack's Redis, read straight from Redis."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            value = client.hget(key, name)
        finally:
            client.close()
        return value.decode() if value else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stack")).running() as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, Stack):
        for process in stack.processes.values():
            report.sections.append((f"{process.name} log", process.output()[-6000:]))
    return report
