"""Runs the fake as a real HTTP server, on asyncio by default or on werkzeug's threads."""

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_fake_app
from .config import FakeConfig
from .fastserver import make_fast_server

SERVERS = ("asyncio", "threaded")


class FakeServer(Protocol):
    """What serving needs of either server: its port, a blocking loop and a way to stop it."""

    server_port: int

    def serve_forever(self) -> None:
        """Answer requests until shut down."""

    def shutdown(self) -> None:
        """Stop serve_forever from another thread and wait for it."""

    def server_close(self) -> None:
        """Release the listening socket."""


class _Http11Handler(WSGIRequestHandler):
    """Answers as HTTP/1.1; werkzeug still closes the connection after every response."""

    protocol_version = "HTTP/1.1"


class _QuietHandler(_Http11Handler):
    """Skips the per-request access log, which costs time under load."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def make_fake_server(
    config: FakeConfig, host: str, port: int, *, verbose: bool = False, server: str = "asyncio"
) -> FakeServer:
    """Bind a server for a fresh fake app; port 0 picks a free port."""
    if server == "asyncio":
        return make_fast_server(config, host, port, verbose=verbose)
    if server == "threaded":
        handler = _Http11Handler if verbose else _QuietHandler
        app = create_fake_app(config)
        return make_server(host, port, app, threaded=True, request_handler=handler)
    raise ValueError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")


@contextmanager
def _stopped_by_signals(server: FakeServer) -> Iterator[None]:
    # Signal handlers can only be set in the main thread; elsewhere the caller stops the server.
    # The asyncio server puts its event loop's own handlers in place of these while it runs.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown waits for serve_forever, which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    config: FakeConfig, host: str, port: int, *, verbose: bool = False, server: str = "asyncio"
) -> None:
    """Run the fake until SIGINT, SIGTERM or shutdown, announcing its address once ready."""
    fake = make_fake_server(config, host, port, verbose=verbose, server=server)
    print(f"fake WeChat listening on http://{host}:{fake.server_port}", flush=True)
    try:
        with _stopped_by_signals(fake):
            fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.server_close()
    sys.stdout.flush()
