"""Bearer-token checks for the operator and status endpoints; constant-time, framework-free."""

from __future__ import annotations

import hmac
from collections.abc import Sequence


class BearerTokens:
    """The tokens from API_TOKENS; any one of them grants access."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def allows(self, authorization: str | None) -> bool:
        """True when the Authorization header carries a known bearer token."""
        if not authorization or not self._tokens:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        offered = token.strip().encode()
        # Check every token, so the time taken does not reveal which one nearly matched.
        matches = [hmac.compare_digest(offered, known) for known in self._tokens]
        return any(matches)
