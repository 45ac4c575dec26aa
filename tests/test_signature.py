"""Standard Webhooks verification: interop with the reference library and the tolerance edges."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from freezegun import freeze_time
from standardwebhooks import Webhook

from notifier.errors import MalformedSignatureHeaders, SignatureError
from notifier.signature import Verifier, new_secret, sign, signed_headers

BODY = b'{"touser":"oABC123","template_id":"T1","data":{"k":{"value":"v"}}}'
NOW = 1_790_000_000


def test_a_request_signed_by_the_reference_library_is_accepted() -> None:
    secret = new_secret()
    stamp = datetime.now(tz=UTC)
    header = Webhook(secret).sign("msg_abc", stamp, BODY.decode())
    headers = {
        "webhook-id": "msg_abc",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": header,
    }
    assert Verifier([secret]).verify(headers, BODY) == "msg_abc"


def test_our_signature_is_accepted_by_the_reference_library() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "msg_xyz", BODY)
    Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamps_within_five_minutes_either_way_are_accepted(offset: int) -> None:
    secret = new_secret()
    headers = signed_headers(secret, "m1", BODY, now=NOW + offset)
    with freeze_time(datetime.fromtimestamp(NOW, tz=UTC)):
        assert Verifier([secret]).verify(headers, BODY) == "m1"


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_timestamps_beyond_five_minutes_are_refused(offset: int) -> None:
    secret = new_secret()
    headers = signed_headers(secret, "m1", BODY, now=NOW + offset)
    with (
        freeze_time(datetime.fromtimestamp(NOW, tz=UTC)),
        pytest.raises(SignatureError, match="5 minutes"),
    ):
        Verifier([secret]).verify(headers, BODY)


def test_a_changed_body_is_refused() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "m1", BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        Verifier([secret]).verify(headers, BODY + b" ")


def test_a_changed_id_is_refused() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "m1", BODY)
    headers["webhook-id"] = "m2"
    with pytest.raises(SignatureError):
        Verifier([secret]).verify(headers, BODY)


def test_a_signature_from_another_secret_is_refused() -> None:
    headers = signed_headers(new_secret(), "m1", BODY)
    with pytest.raises(SignatureError):
        Verifier([new_secret()]).verify(headers, BODY)


def test_rotation_accepts_either_secret() -> None:
    old, new = new_secret(), new_secret()
    verifier = Verifier([new, old])
    assert verifier.verify(signed_headers(old, "a", BODY), BODY) == "a"
    assert verifier.verify(signed_headers(new, "b", BODY), BODY) == "b"


def test_one_good_signature_among_several_is_enough() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "m1", BODY)
    bogus = "v1," + base64.b64encode(b"x" * 32).decode()
    headers["webhook-signature"] = f"v2,abc {bogus} {headers['webhook-signature']}"
    assert Verifier([secret]).verify(headers, BODY) == "m1"


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-signature": ""},
        {"webhook-timestamp": "yesterday"},
        {"webhook-timestamp": "1_700_000_000"},
        {"webhook-timestamp": "+1700000000"},
        {"webhook-timestamp": "1700000000.5"},
        {"webhook-signature": "v1,not-base64!!"},
        {"webhook-signature": "v1a,AAAA"},
    ],
)
def test_missing_or_malformed_headers_are_refused(change: dict[str, str]) -> None:
    secret = new_secret()
    headers = {**signed_headers(secret, "m1", BODY), **change}
    with pytest.raises(SignatureError):
        Verifier([secret]).verify(headers, BODY)


def test_sign_matches_the_specification_example() -> None:
    # The worked example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": "m 1"},
        {"webhook-id": "m1,m1"},
        {"webhook-id": "m\u00fc"},
        {"webhook-id": "m" * 257},
        {"webhook-timestamp": "yesterday"},
        {"webhook-timestamp": "\u00b2"},
        {"webhook-timestamp": "1700000000,1700000000"},
        {"webhook-timestamp": "1" * 33},
        {"webhook-signature": "v1,not-base64!!"},
        {"webhook-signature": "v1,AAAA=,v1,AAAA="},
        {"webhook-signature": "v1"},
    ],
)
def test_malformed_or_repeated_headers_are_told_apart_from_a_bad_signature(
    change: dict[str, str],
) -> None:
    secret = new_secret()
    headers = {**signed_headers(secret, "m1", BODY), **change}
    with pytest.raises(MalformedSignatureHeaders):
        Verifier([secret]).verify(headers, BODY)


@pytest.mark.parametrize(
    "change",
    [{"webhook-id": ""}, {"webhook-timestamp": "1000000000"}, {"webhook-signature": "v1,AAAA"}],
)
def test_missing_stale_or_unmatched_signatures_are_not_malformed(change: dict[str, str]) -> None:
    secret = new_secret()
    headers = {**signed_headers(secret, "m1", BODY), **change}
    with pytest.raises(SignatureError) as raised:
        Verifier([secret]).verify(headers, BODY)
    assert not isinstance(raised.value, MalformedSignatureHeaders)


def test_the_timestamp_is_verified_over_its_exact_text() -> None:
    secret = new_secret()
    text = f"00{NOW}"
    headers = {"webhook-id": "m1", "webhook-timestamp": text,
               "webhook-signature": sign(secret, "m1", text, BODY)}  # fmt: skip
    with freeze_time(datetime.fromtimestamp(NOW, tz=UTC)):
        assert Verifier([secret]).verify(headers, BODY) == "m1"
        headers["webhook-signature"] = sign(secret, "m1", NOW, BODY)
        with pytest.raises(SignatureError, match="no signature matches"):
            Verifier([secret]).verify(headers, BODY)
