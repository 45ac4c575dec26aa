"""Log redaction: tokens and secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from notifier import logs
from notifier.logs import RedactingFilter, redact


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("GET /cgi-bin/message/template/send?access_token=AbC123-_x HTTP/1.1", "AbC123"),
        ("/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=S3CRET", "S3CRET"),
        ('{"access_token": "TOK456", "expires_in": 7200}', "TOK456"),
        ("{'secret': 'abcdef'}", "abcdef"),
        ("WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8"),
    ],
)
def test_secrets_are_masked(text: str, leak: str) -> None:
    assert leak not in redact(text)
    assert "***" in redact(text)


def test_the_filter_masks_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise RuntimeError("failed url ...?access_token=LEAKED1")
    except RuntimeError:
        logger.exception("calling %s", "/send?access_token=LEAKED2")
    assert "LEAKED1" not in caplog.text
    assert "LEAKED2" not in caplog.text


# --- JSON lines ---------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer, through the handler set-up processes use."""
    stream = io.StringIO()
    logger = logging.getLogger("test.json")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logs.install(logger, fmt="json", role="worker")
    yield logger, stream
    logger.handlers = []
    logs.start()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_role_and_message(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_lines
    logger.warning("message %s sent", "m1")
    [line] = lines(stream)
    assert line["level"] == "WARNING"
    assert line["logger"] == "test.json"
    assert line["role"] == "worker"
    assert line["message"] == "message m1 sent"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])
    assert not set(line) & set(logs.FIELDS), "no unit of work bound, no work fields"


def test_a_json_line_carries_the_bound_work_and_the_call_s_extras(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_lines
    logs.start(task_id="t1", message_id="m1", campaign_id=None)
    logs.bind(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", attempt=2)
    logger.info("will be retried", extra={"errcode": -1, "attempt": 3, "touser": "oSecret"})
    logs.start(webhook_id="w2")  # a new unit of work keeps nothing of the last
    logger.info("next")
    first, second = lines(stream)
    assert {k: first[k] for k in logs.FIELDS if k in first} == {
        "task_id": "t1", "message_id": "m1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "attempt": 3, "errcode": -1,
    }  # fmt: skip
    assert "touser" not in first, "only the known fields leave as extras"
    assert {k: second[k] for k in logs.FIELDS if k in second} == {"webhook_id": "w2"}


def test_json_lines_mask_secrets_everywhere_in_the_line(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_lines
    logs.start(message_id="secret=LEAKED3", campaign_id={"secret": "LEAKED5"})
    try:
        raise RuntimeError('WeChat said {"access_token": "LEAKED1"}')
    except RuntimeError:
        logger.exception(
            "calling %s", "/send?access_token=LEAKED2", extra={"errcode": "whsec_LEAKED4"}
        )
    text = stream.getvalue()
    for leak in ("LEAKED1", "LEAKED2", "LEAKED3", "LEAKED4", "LEAKED5"):
        assert leak not in text
    [line] = lines(stream)  # masked before encoding: still one valid JSON object
    assert "RuntimeError" in line["exception"]
    assert '"access_token": "***"' in line["exception"]
    assert line["message"] == "calling /send?access_token=***"


def test_a_stack_and_odd_values_still_make_a_json_line(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_lines
    logs.start(message_id=object(), webhook_id="ünïcode \n line")
    logger.info("with stack", stack_info=True)
    [line] = lines(stream)
    assert "test_a_stack_and_odd_values" in line["stack"]
    assert line["webhook_id"] == "ünïcode \n line"
    assert line["message_id"].startswith("<object")


def test_text_lines_stay_as_they_were() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.text")
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logs.install(logger, fmt="text")
    logs.start(message_id="m1")
    try:
        logger.warning("plain %s", "access_token=LEAKED")
    finally:
        logger.handlers = []
        logs.start()
    assert stream.getvalue() == "plain access_token=***\n"
