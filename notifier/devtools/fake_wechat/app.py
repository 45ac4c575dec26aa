"""WeChat's token and template-send endpoints, emulated closely enough to exercise a client."""

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from . import handlers
from .config import FakeConfig
from .control import register_control
from .handlers import Outcome
from .state import FakeState


def _reply(outcome: Outcome) -> Response | tuple[dict[str, Any], int]:
    if isinstance(outcome.body, str):
        return Response(outcome.body, outcome.status, mimetype="text/plain")
    return outcome.body, outcome.status


def _register_api(app: Flask, state: FakeState) -> None:
    @app.get(handlers.TOKEN_PATH)
    def token() -> Response | tuple[dict[str, Any], int]:
        return _reply(handlers.classic_token(state, request.args))

    @app.post(handlers.STABLE_TOKEN_PATH)
    def stable_token() -> Response | tuple[dict[str, Any], int]:
        return _reply(handlers.stable_token(state, request.get_data()))

    @app.post(handlers.SEND_PATH)
    def send() -> Response | tuple[dict[str, Any], int]:
        steps = handlers.send(state, request.args.get("access_token"), request.get_data())
        return _reply(handlers.run_blocking(steps, state.sleep))


def create_fake_app(
    config: FakeConfig,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    state: FakeState | None = None,
) -> Flask:
    """Build the fake WeChat API as a Flask app over fresh state, or over `state` to share it."""
    if state is None:
        state = FakeState.build(config, clock=clock, sleep=sleep)
    elif state.config != config:
        raise ValueError("the shared state was built for a different config")
    app = Flask(__name__)
    app.extensions["fake_wechat"] = state
    _register_api(app, state)
    register_control(app, state)
    return app
