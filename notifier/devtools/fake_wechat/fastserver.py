"""An asyncio server for the fake: send and token calls in the loop, everything else via Flask."""

import asyncio
import contextlib
import json
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from wsgiref.types import WSGIApplication

from . import handlers
from .app import create_fake_app
from .bridge import build_environ, call_app
from .config import FakeConfig
from .handlers import Outcome
from .state import FakeState
from .wire import BadRequest, Request, encode_response, first_args, read_request, status_line

HEALTH_PATH = "/healthz"
BACKLOG = 1024
_JSON = [("Content-Type", "application/json")]
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _encode(outcome: Outcome, request: Request | None) -> bytes:
    if isinstance(outcome.body, str):
        headers, body = _TEXT, outcome.body.encode()
    else:
        # Spelled as the Flask app spells JSON, so both servers answer byte for byte alike.
        headers = _JSON
        body = (json.dumps(outcome.body, separators=(",", ":"), sort_keys=True) + "\n").encode()
    return encode_response(status_line(outcome.status), headers, body, request)


def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Callable[[], None]:
    # Only handlers the loop registers wake it when another thread receives the signal.
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)

    def restore() -> None:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)

    return restore


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


class FastServer:
    """One fake on its own event loop; serve_forever blocks until shutdown, SIGINT or SIGTERM."""

    def __init__(
        self,
        state: FakeState,
        app: WSGIApplication,
        host: str,
        port: int,
        *,
        verbose: bool = False,
    ) -> None:
        self.state = state
        self._app = app
        self._verbose = verbose
        self._socket = _listen(host, port)
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        self.server_port = self.server_address[1]
        self._guard = threading.Lock()
        self._started = self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._finished = threading.Event()
        self._connections: set[asyncio.Task[None]] = set()

    def serve_forever(self) -> None:
        """Answer requests until shutdown is called, or a stop signal comes to the main thread."""
        with self._guard:
            self._started = True
        try:
            with asyncio.Runner() as runner:
                runner.run(self._serve())
        finally:
            self._finished.set()

    def shutdown(self) -> None:
        """Stop serve_forever and wait until it has returned; call it from another thread."""
        with self._guard:
            self._stopping = True
            loop, stop, started = self._loop, self._stop, self._started
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
        if started:
            self._finished.wait()

    def server_close(self) -> None:
        """Release the listening socket."""
        self._socket.close()

    async def _serve(self) -> None:
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        with self._guard:
            if self._stopping:
                return
            self._loop, self._stop = loop, stop

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = loop.create_task(self._converse(reader, writer))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

        on_main_thread = threading.current_thread() is threading.main_thread()
        restore_signals = _stop_on_signals(loop, stop) if on_main_thread else None
        server = await asyncio.start_server(accept, sock=self._socket)
        try:
            await stop.wait()
        finally:
            if restore_signals is not None:
                restore_signals()
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while True:
                try:
                    request = await read_request(reader, writer)
                except BadRequest as error:
                    writer.write(_encode(Outcome(f"{error.status} {error}\n", error.status), None))
                    return
                if request is None:
                    return
                status, response = await self._respond(request, peer)
                writer.write(response)
                if self._verbose:
                    line = f"{request.method} {request.target} {request.version}"
                    print(f'{peer[0]} - - "{line}" {status} -', file=sys.stderr, flush=True)
                if not request.keep_alive:
                    return
                await writer.drain()
        except OSError:
            return
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _respond(self, request: Request, peer: tuple[str, int]) -> tuple[int, bytes]:
        path, _, query = request.target.partition("?")
        query, method, state = query.partition("#")[0], request.method, self.state
        try:
            if path == handlers.SEND_PATH and method == "POST":
                token = first_args(query).get("access_token")
                outcome = await handlers.run_awaiting(handlers.send(state, token, request.body))
            elif path == handlers.TOKEN_PATH and method == "GET":
                outcome = handlers.classic_token(state, first_args(query))
            elif path == handlers.STABLE_TOKEN_PATH and method == "POST":
                outcome = handlers.stable_token(state, request.body)
            elif path == HEALTH_PATH and method == "GET":
                outcome = Outcome("ok")
            else:
                return await self._bridge(request, peer)
        except Exception:
            traceback.print_exc()
            outcome = handlers.http_fault(500)
        return outcome.status, _encode(outcome, request)

    async def _bridge(self, request: Request, peer: tuple[str, int]) -> tuple[int, bytes]:
        environ = build_environ(request, self.server_address, peer)
        loop = asyncio.get_running_loop()
        status, headers, body = await loop.run_in_executor(None, call_app, self._app, environ)
        return int(status.split(" ", 1)[0]), encode_response(status, headers, body, request)


def make_fast_server(
    config: FakeConfig, host: str, port: int, *, verbose: bool = False
) -> FastServer:
    """Bind the asyncio server and the Flask app over one fresh state; port 0 picks a port."""
    state = FakeState.build(config)
    return FastServer(state, create_fake_app(config, state=state), host, port, verbose=verbose)
