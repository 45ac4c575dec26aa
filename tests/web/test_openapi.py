"""GET /openapi.json: what the document says, and schemathesis holding the live app to it."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import hypothesis
import pytest
import redis
import requests
import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.serving import WSGIRequestHandler, make_server

from notifier.config import Settings
from notifier.signature import signed_headers
from notifier.store.campaigns import Outcome, Settled
from notifier.store.messages import MessageState
from notifier.store.quota import QuotaGate
from notifier.web.app import create_app
from notifier.web.openapi import PRINTABLE, document_paths, ecma_pattern
from notifier.wechat.receipts import sha1_signature
from tests.conftest import GOOD, SECRET

TOKEN = "openapi-token-0123456789"
CALLBACK_TOKEN = "openapi-callback-token"
METRICS_TOKEN = "openapi-metrics-token"
SIGNED: list[dict[str, list[str]]] = [
    {"webhookId": [], "webhookTimestamp": [], "webhookSignature": []}
]
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# At most EXAMPLES cases per operation and generation mode, derandomized, so each run sends the
# same cases. BUDGET seconds in all, shared out as the run goes: a slow machine, or the oldest
# schemathesis allowed (it generates ten times slower), runs a prefix of the same cases.
EXAMPLES = 100
BUDGET = 30.0


class OutOfTime(BaseException):
    """Hypothesis lets a BaseException through at once: no shrinking, no report."""


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    return create_app(
        replace(
            settings,
            api_tokens=(TOKEN,),
            wechat_callback_token=CALLBACK_TOKEN,
            metrics_token=METRICS_TOKEN,
        )
    )


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    found: dict[str, Any] = response.get_json()
    return found


def test_the_document_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "notifier"


def test_every_route_is_described(app: Flask, document: dict[str, Any]) -> None:
    routes = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert document_paths(document) == routes


def test_signed_and_bearer_endpoints_say_so(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path in ("/v1/messages", "/v1/messages/batch"):
        assert paths[path]["post"]["security"] == SIGNED
        assert "401" in paths[path]["post"]["responses"]
    bearer = {
        (p, m) for p, item in paths.items() for m, op in item.items() if op["security"] == BEARER
    }
    assert bearer == {
        ("/v1/messages/{message_id}", "get"),
        ("/v1/messages/{message_id}", "delete"),
        ("/v1/batches/{campaign_id}", "get"),
        ("/v1/batches/{campaign_id}", "delete"),
        ("/v1/batches/{campaign_id}/replay", "post"),
        ("/v1/dead-letters", "get"),
        ("/v1/dead-letters/{message_id}/replay", "post"),
        ("/v1/dead-letters/replay", "post"),
        ("/v1/quota", "get"),
        ("/v1/quota/resume", "post"),
    }
    assert paths["/metrics"]["get"]["security"] == [{}, {"metricsBearer": []}]
    schemes = document["components"]["securitySchemes"]
    assert {schemes[name]["name"] for name in SIGNED[0]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}


def test_refusals_are_problem_details(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for status in ("BadRequest", "Unauthorized", "NotFound", "RequestTimeout", "Conflict",
                   "ContentTooLarge", "UnsupportedMediaType", "Unavailable"):  # fmt: skip
        assert list(responses[status]["content"]) == ["application/problem+json"]
    intake = document["paths"]["/v1/messages"]["post"]["responses"]
    assert set(intake) == {"202", "400", "401", "408", "409", "413", "415", "503"}


def test_the_template_value_and_the_patterns_are_exact(document: dict[str, Any]) -> None:
    message = document["components"]["schemas"]["Message"]
    data = message["properties"]["data"]
    assert (data["minProperties"], data["maxProperties"]) == (1, 50)
    assert data["propertyNames"] == {"pattern": "^[A-Za-z0-9_]{1,32}$"}
    value = data["additionalProperties"]
    assert value["required"] == ["value"] and value["additionalProperties"] is False
    assert value["properties"]["value"]["maxLength"] == 200
    assert value["properties"]["value"]["pattern"] == PRINTABLE
    assert message["properties"]["touser"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert message["properties"]["url"]["format"] == "uri"
    assert message["additionalProperties"] is False


@pytest.mark.parametrize(
    ("python", "ecma"),
    [
        (r"^[a-z]{1,3}$", "^[a-z]{1,3}$"),
        (r"\A[a-z]{1,3}\Z", "^[a-z]{1,3}$"),
        (r"[a-z]{1,3}", "^[a-z]{1,3}$"),
        (r"a|b", "^(?:a|b)$"),
        (r"^a\$", r"^a\$$"),
    ],
)
def test_patterns_are_anchored_for_json_schema(python: str, ecma: str) -> None:
    assert ecma_pattern(python) == ecma


class Signer(requests.auth.AuthBase):
    """Signs each request as sent: the webhook headers over the exact body, with a fresh id;
    the bearer tokens; WeChat's sha1 over the callback's query, at a fresh timestamp."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")
        if url.path == "/wechat/callback":
            request.prepare_url(_signed_callback(url), None)
            return request
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        # The generated webhook-id goes first, to probe its rules; the suffix keeps it fresh.
        msg_id = f"{request.headers.get('webhook-id') or 'msg'}_{uuid.uuid4().hex}"
        request.headers.update(signed_headers(SECRET, msg_id, raw))
        token = METRICS_TOKEN if url.path == "/metrics" else TOKEN
        request.headers["Authorization"] = f"Bearer {token}"
        return request


def _signed_callback(url: SplitResult) -> str:
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    timestamp = query.get("timestamp", "")
    if timestamp.isascii() and timestamp.isdigit():
        query["timestamp"] = str(int(time.time()))  # else kept, to probe its parsing
    parts = (CALLBACK_TOKEN, query.get("timestamp", ""), query.get("nonce", ""))
    query["signature"] = sha1_signature(*parts)
    return urlunsplit(url._replace(query=urlencode(query)))


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """Thousands of requests: their lines would bury a failure's report."""


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free loopback port, as a client meets it."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A client that signs every request it sends (Signer)."""
    with requests.Session() as signing:
        signing.auth = Signer()
        yield signing


def test_answers_about_real_records_conform(
    live: str, session: requests.Session, app: Flask, redis_client: redis.Redis, settings: Settings
) -> None:
    """The fuzzer's ids name nothing, so the 200s about real records are checked here."""
    schema = schemathesis.openapi.from_dict(session.get(f"{live}/openapi.json", timeout=10).json())
    sent = session.post(f"{live}/v1/messages", json=GOOD, timeout=10).json()["id"]
    dead = session.post(f"{live}/v1/messages", json=GOOD, timeout=10).json()["id"]
    campaign = {"template_id": "TPL_1", "data": GOOD["data"],
                "recipients": [{"touser": f"oUser{i}"} for i in range(3)]}  # fmt: skip
    batch = session.post(f"{live}/v1/messages/batch", json=campaign, timeout=10).json()["batch_id"]
    state = MessageState(redis_client)
    state.record_retrying(sent, -1, "system busy")
    state.record_sent(sent, 200000001)
    state.record_failed(dead, 43004, "require subscribe", {"id": dead, **GOOD})
    campaigns = app.extensions["notifier"].stores.campaigns
    campaigns.record(batch, 0, Outcome("sent", 1, 200000002))
    campaigns.record(batch, 1, Outcome("failed", 1, None, 43019), "oUser1", "user blocked")
    dead_one = Settled(2, Outcome("dead", 5, None, -1), "oUser2", "system busy", None)
    campaigns.record_many(batch, [dead_one], shared={"template_id": "TPL_1", "data": GOOD["data"]})
    QuotaGate(redis_client, settings.wechat_app_id).pause("reach max api daily quota limit")
    later = {**GOOD, "send_at": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}Z"}
    waiting = session.post(f"{live}/v1/messages", json=later, timeout=10).json()["id"]
    batch_later = {**campaign, "send_at": later["send_at"]}
    waiting_batch = session.post(f"{live}/v1/messages/batch", json=batch_later, timeout=10)
    later_batch = waiting_batch.json()["batch_id"]
    requests_made = [
        ("/v1/messages/{message_id}", "GET", {"message_id": waiting}, 200),
        ("/v1/messages/{message_id}", "DELETE", {"message_id": waiting}, 200),
        ("/v1/messages/{message_id}", "DELETE", {"message_id": sent}, 409),
        ("/v1/batches/{campaign_id}", "GET", {"campaign_id": later_batch}, 200),
        ("/v1/messages/{message_id}", "GET", {"message_id": f"{later_batch}-0"}, 200),
        ("/v1/batches/{campaign_id}", "DELETE", {"campaign_id": later_batch}, 200),
        ("/v1/batches/{campaign_id}", "GET", {"campaign_id": later_batch}, 200),
        ("/v1/messages/{message_id}", "GET", {"message_id": sent}, 200),
        ("/v1/messages/{message_id}", "GET", {"message_id": f"{batch}-0"}, 200),
        ("/v1/messages/{message_id}", "GET", {"message_id": f"{batch}-1"}, 200),
        ("/v1/messages/{message_id}", "GET", {"message_id": f"{batch}-2"}, 200),
        ("/v1/batches/{campaign_id}", "GET", {"campaign_id": batch}, 200),
        ("/v1/batches/{campaign_id}/replay", "POST", {"campaign_id": batch}, 202),
        ("/v1/dead-letters", "GET", {}, 200),
        ("/v1/quota", "GET", {}, 200),
        ("/v1/quota/resume", "POST", {}, 202),
        ("/v1/dead-letters/{message_id}/replay", "POST", {"message_id": dead}, 202),
        ("/v1/dead-letters/replay", "POST", {}, 202),
    ]
    for path, method, parameters, status in requests_made:
        case = schema[path][method].Case(path_parameters=parameters)
        response = case.call(base_url=live, session=session, timeout=10)
        assert response.status_code == status, (path, parameters, response.text)
        case.validate_response(response, checks=CHECKS)


class Fuzz:
    """One run of schemathesis over a live app: cases, their statuses and the failures."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.session = session
        self.cases: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        # The first request of each distinct failure, and how many cases met it.
        self.failures: dict[str, tuple[str, int]] = {}
        self.cut_short = 0  # operations and modes the budget stopped before EXAMPLES

    def operation(self, operation: Any, mode: Any, until: float) -> None:
        """Up to EXAMPLES cases of one operation in one mode, derandomized, until `until`.

        (`Any`: schemathesis's operations and cases take other type parameters in each 4.x.)
        """

        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            if time.monotonic() > until:
                self.cut_short += 1
                raise OutOfTime
            self.cases[operation.label] += 1
            response = case.call(base_url=self.base_url, session=self.session, timeout=10)
            self.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except (AssertionError, BaseExceptionGroup) as exc:  # one failure, or several
                kinds = getattr(exc, "exceptions", [exc])
                key = f"{operation.label} ({mode.value}): {'; '.join(map(_title, kinds))}"
                first, count = self.failures.get(key, (f"{exc}\n{_sent(response)}", 0))
                self.failures[key] = (first, count + 1)

        try:
            fuzz()
        except OutOfTime:
            pass
        except hypothesis.errors.Unsatisfiable:
            assert mode == schemathesis.GenerationMode.NEGATIVE  # nothing there to break


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(
    live: str, session: requests.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    document = session.get(f"{live}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    run = Fuzz(live, session)
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    runs = [(result.ok(), mode) for result in results if isinstance(result, Ok) for mode in modes]
    # Each gets its fair share of the time left; bodies, slowest to generate, go last, so
    # they are given what the quick ones leave.
    runs.sort(key=lambda item: "requestBody" in document["paths"][item[0].path][item[0].method])
    started = time.monotonic()
    for done, (operation, mode) in enumerate(runs):
        now = time.monotonic()
        run.operation(operation, mode, until=now + (started + BUDGET - now) / (len(runs) - done))
    total = sum(run.cases.values())
    with capsys.disabled():
        print(f"\nschemathesis: {total} cases over {len(run.cases)} operations "
              f"in {time.monotonic() - started:.1f} s ({run.cut_short} of {len(runs)} "
              f"operation-modes cut short by the {BUDGET:g} s budget), "
              f"statuses {dict(sorted(run.statuses.items()))}, "
              f"{sum(n for _, n in run.failures.values())} failing")  # fmt: skip
    assert len(run.cases) == len(document_paths(document))
    report = [
        f"{key}: {count} cases; the first:\n{first}" for key, (first, count) in run.failures.items()
    ]
    assert not run.failures, "\n\n".join(report)


def _title(failure: BaseException) -> str:
    return str(getattr(failure, "title", None) or type(failure).__name__)


def _sent(response: schemathesis.Response) -> str:
    """The request exactly as sent, signature included, for a failure's report."""
    sent = response.request
    headers = "".join(f"\n  {name}: {value}" for name, value in sent.headers.items())
    body = sent.body.decode(errors="replace") if isinstance(sent.body, bytes) else sent.body
    return f"  {sent.method} {sent.url}{headers}\n  body: {body!r}"[:3000]
