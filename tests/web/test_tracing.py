"""W3C traceparent at intake: joined when valid, started afresh otherwise, kept with the work."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from notifier import logs
from notifier.config import Settings
from notifier.store.keys import PREFIX, campaign_key, message_key
from notifier.web.app import create_app
from notifier.web.tracing import parse, traceparent
from tests.conftest import GOOD, signed

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Iterator[FlaskClient]:
    yield create_app(settings).test_client()
    logs.start()


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (VALID, (TRACE, "01")),
        (f"  {VALID} ", (TRACE, "01")),  # optional whitespace around a header value
        (f"00-{TRACE}-00f067aa0ba902b7-00", (TRACE, "00")),
        (f"cc-{TRACE}-00f067aa0ba902b7-09-future-fields", (TRACE, "09")),  # a later version
        (f"00-{TRACE}-00f067aa0ba902b7-01-extra", None),  # version 00 has exactly 4 fields
        (f"ff-{TRACE}-00f067aa0ba902b7-01", None),  # version ff is invalid
        (VALID.upper(), None),  # lower-case hex only
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE[:-1]}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE}-00f067aa0ba902b7-1", None),
        (f"00_{TRACE}_00f067aa0ba902b7_01", None),
        ("", None),
        (None, None),
        ("garbage", None),
        ("\u00e9" * 55, None),
    ],
)
def test_traceparent_is_parsed_as_the_w3c_spec_says(
    header: str | None, parsed: tuple[str, str] | None
) -> None:
    assert parse(header) == parsed


def test_this_hop_keeps_the_trace_and_flags_with_a_span_of_its_own() -> None:
    ours = traceparent(VALID)
    assert ours.startswith(f"00-{TRACE}-") and ours.endswith("-01")
    assert ours.split("-")[2] != "00f067aa0ba902b7"
    assert parse(ours) is not None
    fresh = traceparent("invalid")
    assert parse(fresh) is not None and fresh.endswith("-00")
    assert fresh.split("-")[1] != traceparent(None).split("-")[1]


def test_a_message_s_trace_comes_from_its_traceparent_and_goes_back_in_the_202(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    kwargs = signed(GOOD)
    kwargs["headers"]["traceparent"] = VALID
    response = client.post("/v1/messages", **kwargs)
    assert response.status_code == 202
    assert parse(response.headers["traceparent"]) == (TRACE, "01")
    message_id = response.get_json()["id"]
    stored = json.loads(redis_client.hget(message_key(PREFIX, message_id), "payload") or b"")
    assert stored["trace"] == TRACE
    # The request's lines name all of it; the context outlives the request for gunicorn's
    # access line, which the same thread writes after Flask has finished.
    assert logs.bound() == {"trace_id": TRACE, "webhook_id": "msg_1", "message_id": message_id}


@pytest.mark.parametrize("header", [None, "00-nonsense", VALID.upper()])
def test_without_a_valid_traceparent_the_message_gets_a_fresh_trace_never_a_refusal(
    client: FlaskClient, redis_client: redis.Redis, header: str | None
) -> None:
    kwargs = signed(GOOD)
    if header is not None:
        kwargs["headers"]["traceparent"] = header
    response = client.post("/v1/messages", **kwargs)
    assert response.status_code == 202
    fresh = parse(response.headers["traceparent"])
    assert fresh is not None and fresh[0] != TRACE
    stored = redis_client.hget(message_key(PREFIX, response.get_json()["id"]), "payload")
    assert json.loads(stored or b"")["trace"] == fresh[0]


def test_a_campaign_keeps_its_trace_once_in_its_record(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    people = [{"touser": f"oPerson{i:06d}"} for i in range(150)]
    kwargs = signed({"template_id": "TPL", "data": {"k": {"value": "v"}}, "recipients": people})
    kwargs["headers"]["traceparent"] = VALID
    response = client.post("/v1/messages/batch", **kwargs)
    assert response.status_code == 202
    campaign_id = response.get_json()["batch_id"]
    assert redis_client.hget(campaign_key(PREFIX, campaign_id), "trace") == TRACE.encode()
    chunks = redis_client.hvals(campaign_key(PREFIX, campaign_id, "chunks"))
    assert len(chunks) == 2 and all(b"trace" not in chunk for chunk in chunks)
    assert logs.bound()["campaign_id"] == campaign_id


def test_every_answer_names_its_trace_and_each_request_starts_a_new_context(
    client: FlaskClient,
) -> None:
    logs.start(message_id="left-over")
    refused = client.post("/v1/messages", data=b"{}", headers={"traceparent": VALID})
    assert refused.status_code == 401
    assert parse(refused.headers["traceparent"]) == (TRACE, "01")
    assert logs.bound() == {"trace_id": TRACE}
    health = client.get("/healthz")
    assert parse(health.headers["traceparent"]) is not None
