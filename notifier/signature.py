"""Standard Webhooks signing and verification, free of any web framework so both ends share it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence

from notifier.errors import MalformedSignatureHeaders, SignatureError

TOLERANCE_SECONDS = 5 * 60
# The request headers a signature covers or carries.
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_PREFIX = "whsec_"
# Standard Webhooks gives webhook-id no character set (it asks only that senders keep `.` out,
# which its reference verifier does not check), so ours is 1-256 printable ASCII characters
# without space or comma: a header sent twice reaches us joined with a comma, never valid.
_WEBHOOK_ID = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,256}")
# Unix seconds as ASCII digits, leading zeros allowed (the signature covers the text as sent);
# the length bound keeps int() cheap, and a joined repeat holds a comma.
_TIMESTAMP = re.compile(r"[0-9]{1,32}")
# One signature: a version, exactly one comma, a value. Versions other than v1 are skipped.
_SIGNATURE = re.compile(r"([\x21-\x2b\x2d-\x7e]+),([\x21-\x2b\x2d-\x7e]+)")


def new_secret() -> str:
    """Make a fresh 32-byte secret in the whsec_<base64> form."""
    return _PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """Decode a whsec_<base64> secret into its HMAC key."""
    raw = secret.removeprefix(_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("webhook secret is not valid base64") from None
    if not key:
        raise SignatureError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """Return the `webhook-signature` header value for a request.

    Args:
        secret: a whsec_<base64> secret.
        msg_id: the `webhook-id` header.
        timestamp: the `webhook-timestamp` header, in Unix seconds, or its exact text.
        body: the raw request body, exactly as sent.
    """
    digest = _digest(secret_key(secret), msg_id, str(timestamp), body)
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Build the three Standard Webhooks headers for a request body."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


class Verifier:
    """Checks signed requests against one or more secrets, so a secret can be rotated."""

    def __init__(self, secrets: Sequence[str], tolerance: int = TOLERANCE_SECONDS) -> None:
        self._keys = [secret_key(s) for s in secrets]
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """Return the verified `webhook-id`.

        Raises:
            MalformedSignatureHeaders: a header breaks its format, or was sent twice.
            SignatureError: a header is missing, the timestamp is more than the
                tolerance away from now, or no signature matches any secret.
        """
        headers = {key.lower(): value for key, value in headers.items()}
        msg_id = headers.get("webhook-id", "")
        raw_timestamp = headers.get("webhook-timestamp", "")
        raw_signatures = headers.get("webhook-signature", "")
        if not (msg_id and raw_timestamp and raw_signatures):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
        if not _WEBHOOK_ID.fullmatch(msg_id):
            raise MalformedSignatureHeaders(
                "webhook-id must be one header of 1-256 printable ASCII characters,"
                " without spaces or commas"
            )
        if not _TIMESTAMP.fullmatch(raw_timestamp):
            raise MalformedSignatureHeaders(
                "webhook-timestamp must be one header of Unix seconds in ASCII digits"
            )
        offered = _offered_signatures(raw_signatures)
        current = time.time() if now is None else now
        if abs(current - int(raw_timestamp)) > self._tolerance:
            raise SignatureError("webhook-timestamp is more than 5 minutes away from now")
        for key in self._keys:
            # Over the header's text as sent, so a sender's spelling of the time is kept.
            expected = _digest(key, msg_id, raw_timestamp, body)
            # Compare against every offered signature so timing reveals nothing.
            if any(hmac.compare_digest(expected, candidate) for candidate in offered):
                return msg_id
        raise SignatureError("no signature matches")


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _offered_signatures(header: str) -> list[bytes]:
    """The v1 signatures of a space-separated list, refusing the list if any item is malformed."""
    offered = []
    for item in header.split():
        match = _SIGNATURE.fullmatch(item)
        if match is None:
            raise MalformedSignatureHeaders(
                "webhook-signature must be one header of space-separated <version>,<base64>"
            )
        version, value = match.groups()
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise MalformedSignatureHeaders(
                "webhook-signature holds a v1 signature that is not base64"
            ) from None
    return offered
