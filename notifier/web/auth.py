"""Who may read statuses and act as an operator: bearer tokens, checked in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from flask import request

from notifier.web.context import web_context
from notifier.web.problems import problem


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


def bearer_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse with 401 unless the request carries a token from API_TOKENS."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not web_context().bearer.allows(request.headers.get("Authorization")):
            return problem(
                401,
                "send Authorization: Bearer <token> with a token from API_TOKENS",
                challenge="Bearer",
            )
        return view(*args, **kwargs)

    return guarded
