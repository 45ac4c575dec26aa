"""A threaded keep-alive HTTP server for the fake, fast enough for load benchmarks."""

import sys

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_fake_app
from .config import FakeConfig


class _KeepAliveHandler(WSGIRequestHandler):
    """Reuses connections, as clients with a connection pool expect."""

    protocol_version = "HTTP/1.1"


class _QuietHandler(_KeepAliveHandler):
    """Skips the per-request access log, which costs time under load."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def make_fake_server(
    config: FakeConfig, host: str, port: int, *, verbose: bool = False
) -> BaseWSGIServer:
    """Bind a threaded server for a fresh fake app; port 0 picks a free port."""
    handler = _KeepAliveHandler if verbose else _QuietHandler
    return make_server(host, port, create_fake_app(config), threaded=True, request_handler=handler)


def serve(config: FakeConfig, host: str, port: int, *, verbose: bool = False) -> None:
    """Run the fake until interrupted or shut down, announcing its address once ready."""
    server = make_fake_server(config, host, port, verbose=verbose)
    print(f"fake WeChat listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.stdout.flush()
