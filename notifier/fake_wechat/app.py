"""WeChat's token and template-send endpoints, emulated closely enough to exercise a client."""

import random
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.http import HTTP_STATUS_CODES

from . import codes
from .config import FakeConfig
from .control import register_control
from .faults import Fault
from .state import FakeState
from .tokens import TokenState
from .validation import check_message

_TOKEN_ERRORS = {
    TokenState.UNKNOWN: codes.INVALID_CREDENTIAL,
    TokenState.INVALIDATED: codes.INVALID_CREDENTIAL,
    TokenState.EXPIRED: codes.TOKEN_EXPIRED,
}


def _answer(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg or codes.errmsg(errcode)}


def _credential_error(config: FakeConfig, grant_type: Any, appid: Any, secret: Any) -> int | None:
    if grant_type != "client_credential":
        return codes.INVALID_GRANT_TYPE
    if not appid:
        return codes.APPID_MISSING
    if appid != config.app_id:
        return codes.INVALID_APPID
    if not secret:
        return codes.APPSECRET_MISSING
    if secret != config.app_secret:
        return codes.INVALID_APPSECRET
    return None


def _http_fault(status: int) -> Response:
    return Response(
        f"{status} {HTTP_STATUS_CODES.get(status, 'Error')}\n", status, mimetype="text/plain"
    )


def _register_tokens(app: Flask, state: FakeState) -> None:
    @app.get("/cgi-bin/token")
    def token() -> dict[str, Any]:
        state.ledger.count("token_calls")
        args = request.args
        error = _credential_error(
            state.config, args.get("grant_type"), args.get("appid"), args.get("secret")
        )
        if error is not None:
            return _answer(error)
        grant = state.tokens.issue_classic()
        state.ledger.count("tokens_issued")
        return {"access_token": grant.access_token, "expires_in": grant.expires_in}

    @app.post("/cgi-bin/stable_token")
    def stable_token() -> dict[str, Any]:
        state.ledger.count("stable_token_calls")
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("force_refresh", False), bool):
            return _answer(codes.DATA_FORMAT_ERROR)
        error = _credential_error(
            state.config, body.get("grant_type"), body.get("appid"), body.get("secret")
        )
        if error is not None:
            return _answer(error)
        force = bool(body.get("force_refresh", False))
        if force:
            state.ledger.count("force_refreshes")
        grant = state.tokens.stable(force_refresh=force)
        if grant.issued:
            state.ledger.count("tokens_issued")
        return {"access_token": grant.access_token, "expires_in": grant.expires_in}


def _register_send(app: Flask, state: FakeState) -> None:
    latency = state.config.latency_ms / 1000
    fail_rate = state.config.fail_rate
    ledger = state.ledger

    def fail(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
        ledger.count_error(errcode)
        return _answer(errcode, errmsg)

    def apply(fault: Fault) -> Response | dict[str, Any] | None:
        if fault.delay_ms:
            state.sleep(fault.delay_ms / 1000)
        if fault.drop or fault.http_status is not None:
            ledger.count("http_faults")
            return _http_fault(fault.http_status or 504)
        if fault.errcode is not None:
            return fail(fault.errcode, fault.errmsg)
        return None

    @app.post("/cgi-bin/message/template/send")
    def send() -> Response | dict[str, Any]:
        ledger.count("send_calls")
        if latency:
            state.sleep(latency)
        access_token = request.args.get("access_token")
        if not access_token:
            return fail(codes.TOKEN_MISSING)
        token_state = state.tokens.check(access_token)
        if token_state is not TokenState.VALID:
            return fail(_TOKEN_ERRORS[token_state])
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return fail(codes.DATA_FORMAT_ERROR)
        problem = check_message(body)
        if problem is not None:
            return fail(*problem)
        fault = state.faults.pop()
        answer = apply(fault) if fault is not None else None
        if answer is not None:
            return answer
        if fail_rate and random.random() < fail_rate:
            return fail(codes.SYSTEM_BUSY)
        return {"errcode": codes.OK, "errmsg": "ok", "msgid": ledger.accept(body)}


def create_fake_app(
    config: FakeConfig,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Flask:
    """Build the fake WeChat API as a Flask app with fresh, empty state."""
    app = Flask(__name__)
    state = FakeState.build(config, clock=clock, sleep=sleep)
    app.extensions["fake_wechat"] = state
    _register_tokens(app, state)
    _register_send(app, state)
    register_control(app, state)
    return app
