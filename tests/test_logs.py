"""Log redaction: tokens and secrets never reach a log line."""

from __future__ import annotations

import logging

import pytest

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
