"""The token and send decisions, kept apart from HTTP so both servers answer identically."""

import asyncio
import json
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from . import codes
from .config import FakeConfig
from .faults import Fault
from .state import FakeState
from .tokens import TokenState
from .validation import check_message

TOKEN_PATH = "/cgi-bin/token"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"
SEND_PATH = "/cgi-bin/message/template/send"

_TOKEN_ERRORS = {
    TokenState.UNKNOWN: codes.INVALID_CREDENTIAL,
    TokenState.INVALIDATED: codes.INVALID_CREDENTIAL,
    TokenState.EXPIRED: codes.TOKEN_EXPIRED,
}


@dataclass(frozen=True)
class Outcome:
    """An endpoint's answer: a JSON object, or plain text for HTTP faults, with its status."""

    body: dict[str, Any] | str
    status: int = 200


# A send call yields each pause (in seconds) it needs and returns its outcome, so the
# threaded server can sleep and the asyncio one can await, with the checks in one order.
Steps = Generator[float, None, Outcome]


def _answer(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg or codes.errmsg(errcode)}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


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


def http_fault(status: int) -> Outcome:
    """Answer a bare HTTP error, as a gateway in front of WeChat would."""
    return Outcome(f"{status} {HTTP_STATUS_CODES.get(status, 'Error')}\n", status)


def classic_token(state: FakeState, args: Mapping[str, str]) -> Outcome:
    """Answer GET /cgi-bin/token for its query parameters."""
    state.ledger.count("token_calls")
    error = _credential_error(
        state.config, args.get("grant_type"), args.get("appid"), args.get("secret")
    )
    if error is not None:
        return Outcome(_answer(error))
    grant = state.tokens.issue_classic()
    state.ledger.count("tokens_issued")
    return Outcome({"access_token": grant.access_token, "expires_in": grant.expires_in})


def stable_token(state: FakeState, raw_body: bytes) -> Outcome:
    """Answer POST /cgi-bin/stable_token for its raw JSON body."""
    state.ledger.count("stable_token_calls")
    body = _json(raw_body)
    if not isinstance(body, dict) or not isinstance(body.get("force_refresh", False), bool):
        return Outcome(_answer(codes.DATA_FORMAT_ERROR))
    error = _credential_error(
        state.config, body.get("grant_type"), body.get("appid"), body.get("secret")
    )
    if error is not None:
        return Outcome(_answer(error))
    force = bool(body.get("force_refresh", False))
    if force:
        state.ledger.count("force_refreshes")
    grant = state.tokens.stable(force_refresh=force)
    if grant.issued:
        state.ledger.count("tokens_issued")
    return Outcome({"access_token": grant.access_token, "expires_in": grant.expires_in})


def _fail(state: FakeState, errcode: int, errmsg: str | None = None) -> Outcome:
    state.ledger.count_error(errcode)
    return Outcome(_answer(errcode, errmsg))


def _apply(state: FakeState, fault: Fault) -> Generator[float, None, Outcome | None]:
    if fault.delay_ms:
        yield fault.delay_ms / 1000
    if fault.drop or fault.http_status is not None:
        state.ledger.count("http_faults")
        return http_fault(fault.http_status or 504)
    if fault.errcode is not None:
        return _fail(state, fault.errcode, fault.errmsg)
    return None


def send(state: FakeState, access_token: str | None, raw_body: bytes) -> Steps:
    """Answer POST /cgi-bin/message/template/send, yielding the pauses it takes on the way."""
    state.ledger.count("send_calls")
    latency = state.config.latency_ms / 1000
    if latency:
        yield latency
    if not access_token:
        return _fail(state, codes.TOKEN_MISSING)
    token_state = state.tokens.check(access_token)
    if token_state is not TokenState.VALID:
        return _fail(state, _TOKEN_ERRORS[token_state])
    body = _json(raw_body)
    if not isinstance(body, dict):
        return _fail(state, codes.DATA_FORMAT_ERROR)
    problem = check_message(body)
    if problem is not None:
        return _fail(state, *problem)
    fault = state.faults.pop(str(body.get("touser", "")))
    answer = (yield from _apply(state, fault)) if fault is not None else None
    if answer is not None:
        return answer
    fail_rate = state.config.fail_rate
    if fail_rate and random.random() < fail_rate:
        return _fail(state, codes.SYSTEM_BUSY)
    msgid = state.ledger.accept(body)
    state.receipts.submit(str(body["touser"]), msgid)
    return Outcome({"errcode": codes.OK, "errmsg": "ok", "msgid": msgid})


def run_blocking(steps: Steps, sleep: Callable[[float], None]) -> Outcome:
    """Drive a send call to its outcome, sleeping through each pause in this thread."""
    while True:
        try:
            pause = next(steps)
        except StopIteration as done:
            outcome: Outcome = done.value
            return outcome
        sleep(pause)


async def run_awaiting(steps: Steps) -> Outcome:
    """Drive a send call to its outcome, awaiting each pause so other calls go on meanwhile."""
    try:
        while True:
            await asyncio.sleep(next(steps))
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome
