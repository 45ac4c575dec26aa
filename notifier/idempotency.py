"""Idempotency on `webhook-id`, so a client that retries after a timeout never sends twice."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis

_PENDING = "pending"
PENDING_TTL = 60
_QUEUED = "queued"


@dataclass(frozen=True)
class Claim:
    """What a webhook-id already stands for."""

    message_id: str
    same_body: bool
    queued: bool


class IdempotencyKeys:
    """Remembers which message each webhook-id produced, and the hash of its body."""

    def __init__(self, client: redis.Redis, ttl: int, prefix: str = "notifier") -> None:
        self._redis = client
        self._ttl = ttl
        self._prefix = prefix

    def reserve(self, webhook_id: str, body: bytes, message_id: str) -> Claim | None:
        """Bind `webhook_id` to `message_id`; return the earlier claim if one exists."""
        digest = hashlib.sha256(body).hexdigest()
        key = self._key(webhook_id)
        value = f"{_PENDING}|{digest}|{message_id}"
        # Pending for a minute only: if the request dies before confirming, a retry
        # can take over instead of being refused for the whole TTL.
        if self._redis.set(key, value, nx=True, ex=PENDING_TTL):
            return None
        return self._read(key, digest)

    def wait(self, webhook_id: str, body: bytes, timeout: float = 3.0) -> Claim | None:
        """Wait for an in-flight request with the same id to finish; None if it gave up."""
        digest = hashlib.sha256(body).hexdigest()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            claim = self._read(self._key(webhook_id), digest)
            if claim is None or claim.queued or not claim.same_body:
                return claim
            time.sleep(0.05)
        return self._read(self._key(webhook_id), digest)

    def confirm(self, webhook_id: str, body: bytes, message_id: str) -> None:
        """Mark the webhook-id's message as durably queued."""
        digest = hashlib.sha256(body).hexdigest()
        self._redis.set(self._key(webhook_id), f"{_QUEUED}|{digest}|{message_id}", ex=self._ttl)

    def release(self, webhook_id: str) -> None:
        """Forget a webhook-id whose message could not be queued, so a retry can succeed."""
        self._redis.delete(self._key(webhook_id))

    def _read(self, key: str, digest: str) -> Claim | None:
        raw = self._redis.get(key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        state, stored_digest, message_id = text.split("|", 2)
        return Claim(message_id, stored_digest == digest, state == _QUEUED)

    def _key(self, webhook_id: str) -> str:
        return f"{self._prefix}:idem:{hashlib.sha256(webhook_id.encode()).hexdigest()[:32]}"
