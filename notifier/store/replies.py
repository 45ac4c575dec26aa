"""Redis replies as text: our clients keep bytes (kombu's need them), so they are decoded here."""

from __future__ import annotations

from typing import Any


def text(raw: Any) -> str:
    """A reply as text: bytes decoded as UTF-8, anything else (a number) formatted."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def maybe_text(raw: Any) -> str | None:
    """As `text`, keeping None (a missing key or field) as None."""
    return None if raw is None else text(raw)
