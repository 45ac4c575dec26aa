"""Access-token bookkeeping, so clients meet WeChat's overlap, renewal and expiry rules."""

import enum
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

OVERLAP_SECONDS = 300.0


class TokenState(enum.Enum):
    """What the send endpoint learns about a presented token."""

    VALID = "valid"
    UNKNOWN = "unknown"
    INVALIDATED = "invalidated"
    EXPIRED = "expired"


@dataclass
class _Token:
    expires_at: float
    revoked_at: float = math.inf

    def state(self, now: float) -> TokenState:
        if now < min(self.expires_at, self.revoked_at):
            return TokenState.VALID
        if self.revoked_at <= self.expires_at:
            return TokenState.INVALIDATED
        return TokenState.EXPIRED


@dataclass(frozen=True)
class Grant:
    """A token handed out, with its remaining lifetime and whether it is new."""

    access_token: str
    expires_in: int
    issued: bool


def _new_value() -> str:
    return secrets.token_urlsafe(60)


class TokenRegistry:
    """Classic and stable tokens with their lifetimes; safe to share between threads."""

    def __init__(self, ttl: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._classic: str | None = None
        self._stable: str | None = None

    def issue_classic(self) -> Grant:
        """Issue a new classic token; the previous one lives on for the overlap only."""
        value = _new_value()
        with self._lock:
            now = self._clock()
            if self._classic is not None:
                old = self._tokens[self._classic]
                old.revoked_at = min(old.revoked_at, now + OVERLAP_SECONDS)
            self._tokens[value] = _Token(expires_at=now + self._ttl)
            self._classic = value
        return Grant(value, self._ttl, issued=True)

    def stable(self, force_refresh: bool) -> Grant:
        """Return the current stable token, renewing it near expiry or when forced."""
        value = _new_value()
        with self._lock:
            now = self._clock()
            stable = self._stable
            if stable is not None:
                current = self._tokens[stable]
                if force_refresh:
                    current.revoked_at = min(current.revoked_at, now)
                elif (
                    current.state(now) is TokenState.VALID
                    and current.expires_at - now > OVERLAP_SECONDS
                ):
                    return Grant(stable, int(current.expires_at - now), issued=False)
            self._tokens[value] = _Token(expires_at=now + self._ttl)
            self._stable = value
        return Grant(value, self._ttl, issued=True)

    def check(self, value: str) -> TokenState:
        """Tell whether a token may be used right now, and if not, why."""
        with self._lock:
            token = self._tokens.get(value)
            if token is None:
                return TokenState.UNKNOWN
            return token.state(self._clock())

    def invalidate_all(self) -> int:
        """Revoke every currently valid token at once; return how many there were."""
        return self._end_all(expire=False)

    def expire_all(self) -> int:
        """Let every currently valid token expire now; return how many there were."""
        return self._end_all(expire=True)

    def _end_all(self, expire: bool) -> int:
        with self._lock:
            now = self._clock()
            live = [t for t in self._tokens.values() if t.state(now) is TokenState.VALID]
            for token in live:
                if expire:
                    token.expires_at = now
                else:
                    token.revoked_at = now
            return len(live)

    def reset(self) -> None:
        """Forget every token ever issued."""
        with self._lock:
            self._tokens.clear()
            self._classic = None
            self._stable = None
