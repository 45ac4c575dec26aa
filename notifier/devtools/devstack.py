"""The whole stack on one machine for development: Redis, fake WeChat, web, worker, beat, Flower."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from notifier.devtools.redis_server import RedisServer, free_port
from notifier.parsing import env_int
from notifier.processes import (
    FLOWER_PORT,
    WEB_CONNECTIONS,
    WEB_PORT,
    WEB_WORKER_CLASS,
    WEB_WORKERS,
    WORKERS,
)
from notifier.processes import worker_pool as worker_pool  # for the tests' workers
from notifier.signature import new_secret

DEV_APP_ID = "wx_dev_app"
DEV_APP_SECRET = "dev_secret"
DEV_CALLBACK_TOKEN = "dev_callback_token"


def web_command(port: int, workers: int = WEB_WORKERS) -> list[str]:
    """gunicorn as the Procfile runs it, on a local port, for the dev stack, bench and tests.

    Without gunicorn's control socket: its default path is one per user, so these short-lived
    servers would take it over from any other gunicorn of the same user, and remove it.
    """
    return [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--worker-class", WEB_WORKER_CLASS,
            "--worker-connections", str(WEB_CONNECTIONS),
            "--no-control-socket"]  # fmt: skip


def pick_port(preferred: int) -> int:
    """Use the preferred port when it is free, else any free one (0 means any)."""
    if preferred == 0:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: a port with only TIME-WAIT connections left is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


@dataclass
class Child:
    """One supervised process, its output prefixed with its name."""

    name: str
    args: list[str]
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    def start(self, env: dict[str, str], echo: Callable[[str], None]) -> None:
        """Start the process and stream its output through `echo`."""
        self.process = subprocess.Popen(
            self.args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pump = threading.Thread(target=self._pump, args=(echo,), daemon=True)
        self.pump.start()

    def _pump(self, echo: Callable[[str], None]) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            self.lines.append(line)
            echo(f"[{self.name:6}] {line.rstrip()}")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Ask the process group to stop, then insist; then close its output pipe."""
        if self.alive():
            assert self.process
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._close_output()

    def _close_output(self) -> None:
        # Closed once the pump has read to the end, so a caller living on (a test) leaks no pipe.
        if self.pump is not None:
            self.pump.join(timeout=5)
            if self.pump.is_alive():
                return
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Ports:
    """The local ports the stack listens on."""

    web: int = WEB_PORT
    wechat: int = 8001
    flower: int = FLOWER_PORT


class DevStack:
    """Starts, watches and stops the development stack."""

    def __init__(
        self,
        home: Path,
        ports: Ports,
        echo: Callable[[str], None] = print,
        *,
        blocked_share: float = 0.0,
    ) -> None:
        self.home = home
        self.ports = Ports(pick_port(ports.web), pick_port(ports.wechat), pick_port(ports.flower))
        self.echo = echo
        # Share of openids whose receipts from the fake say "failed:user block".
        self.blocked_share = blocked_share
        self.redis = RedisServer(home / "redis")
        self.children: list[Child] = []
        self.secret = self._kept("webhook-secret", new_secret)
        self.api_token = self._kept("api-token", lambda: secrets.token_urlsafe(24))

    def _kept(self, name: str, make: Callable[[], str]) -> str:
        """Keep one value per dev home, so pasted commands work across restarts."""
        path = self.home / name
        if path.exists():
            return path.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        value = make()
        path.write_text(value + "\n")
        path.chmod(0o600)
        return value

    @property
    def env(self) -> dict[str, str]:
        """The environment every process of the stack shares."""
        return {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "WECHAT_APP_ID": DEV_APP_ID,
            "WECHAT_APP_SECRET": DEV_APP_SECRET,
            "WECHAT_API_BASE": f"http://127.0.0.1:{self.ports.wechat}",
            "WEBHOOK_SECRET": self.secret,
            "API_TOKENS": self.api_token,
            "WECHAT_CALLBACK_TOKEN": DEV_CALLBACK_TOKEN,
            "PORT": str(self.ports.web),
            "PYTHONUNBUFFERED": "1",
            # Flower listens on loopback only here, so its API (queue lengths) needs no login.
            "FLOWER_UNAUTHENTICATED_API": "true",
        }

    def commands(self) -> dict[str, list[str]]:
        """Each process's command line: the Procfile's, on local ports.

        WEB_CONCURRENCY, WORKER_CONCURRENCY and CAMPAIGN_CONCURRENCY apply as in the Procfile.
        """
        env = self.env
        py = sys.executable
        celery = [py, "-m", "celery", "-A", "notifier.broker.app"]
        try:
            web_workers = env_int(env, "WEB_CONCURRENCY", WEB_WORKERS)
            workers = {
                kind.process: [*celery, "worker", *kind.args(kind.concurrency_in(env)),
                               "--loglevel", "INFO", "--hostname", f"{kind.process}.1@%h"]
                for kind in WORKERS.values()
            }  # fmt: skip
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        return {
            "wechat": [py, "-m", "notifier.devtools.fake_wechat", "--port", str(self.ports.wechat),
                       "--app-id", DEV_APP_ID, "--app-secret", DEV_APP_SECRET,
                       # Receipts to the web's callback, so messages reach delivered or failed.
                       "--callback-url", f"http://127.0.0.1:{self.ports.web}/wechat/callback",
                       "--callback-token", DEV_CALLBACK_TOKEN,
                       "--blocked-share", str(self.blocked_share)],
            "web": web_command(self.ports.web, workers=web_workers),
            **workers,
            "beat": [*celery, "beat", "--loglevel", "INFO",
                     "--schedule", str(self.home / "celerybeat-schedule")],
            "flower": [*celery, "flower", f"--port={self.ports.flower}", "--address=127.0.0.1"],
        }  # fmt: skip

    def start(self) -> None:
        """Start every process and wait until each one answers."""
        commands = self.commands()
        self.echo(f"starting Redis ({self.home / 'redis'}) ...")
        self.redis.start()
        self.children = [Child(name, args) for name, args in commands.items()]
        for child in self.children:
            self.echo(f"starting {child.name} ...")
            child.start(self.env, self.echo)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        checks = {
            "wechat": f"http://127.0.0.1:{self.ports.wechat}/healthz",
            "web": f"http://127.0.0.1:{self.ports.web}/healthz",
            "flower": f"http://127.0.0.1:{self.ports.flower}/healthcheck",
        }
        workers = {"worker", "campaigns"}
        pending = set(checks) | workers
        while pending and time.monotonic() < deadline:
            for child in self.children:
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited during start-up; see its output above")
            for name in list(pending):
                if name in workers:
                    worker = next(c for c in self.children if c.name == name)
                    if any(" ready." in line for line in worker.lines):
                        pending.discard(name)
                    continue
                try:
                    if requests.get(checks[name], timeout=1).ok:
                        pending.discard(name)
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")

    def watch(self) -> str | None:
        """Block until a process dies; return its name."""
        while True:
            for child in self.children:
                if not child.alive():
                    return child.name
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every process, newest first, then Redis."""
        for child in reversed(self.children):
            child.stop()
        self.redis.stop()
