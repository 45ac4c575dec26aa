"""Standard Webhooks signing and verification, free of any web framework so both ends share it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence

from notifier.errors import SignatureError

TOLERANCE_SECONDS = 5 * 60
# The request headers a signature covers or carries.
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_PREFIX = "whsec_"


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


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` header value for a request.

    Args:
        secret: a whsec_<base64> secret.
        msg_id: the `webhook-id` header.
        timestamp: the `webhook-timestamp` header, in Unix seconds.
        body: the raw request body, exactly as sent.
    """
    return "v1," + base64.b64encode(_digest(secret_key(secret), msg_id, timestamp, body)).decode()


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
            SignatureError: a header is missing or malformed, the timestamp is more
                than the tolerance away from now, or no signature matches any secret.
        """
        headers = {key.lower(): value for key, value in headers.items()}
        msg_id = headers.get("webhook-id", "")
        raw_timestamp = headers.get("webhook-timestamp", "")
        raw_signatures = headers.get("webhook-signature", "")
        if not (msg_id and raw_timestamp and raw_signatures):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
        if len(msg_id) > 256:
            raise SignatureError("webhook-id is longer than 256 characters")
        if not raw_timestamp.isascii() or not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
            raise SignatureError("webhook-timestamp is not a Unix time in seconds")
        timestamp = int(raw_timestamp)
        current = time.time() if now is None else now
        if abs(current - timestamp) > self._tolerance:
            raise SignatureError("webhook-timestamp is more than 5 minutes away from now")
        offered = _offered_signatures(raw_signatures)
        for key in self._keys:
            expected = _digest(key, msg_id, timestamp, body)
            # Compare against every offered signature so timing reveals nothing.
            if any(hmac.compare_digest(expected, candidate) for candidate in offered):
                return msg_id
        raise SignatureError("no signature matches")


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _offered_signatures(header: str) -> list[bytes]:
    offered = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != "v1" or not value:
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return offered
