"""Acknowledgements the broker transport writes with its next read, not one round trip each."""

from __future__ import annotations

from collections import deque


class PendingAcks:
    """Delivery tags acknowledged by the pool's threads, until the consumer's next read."""

    def __init__(self) -> None:
        self._tags: deque[str] = deque()  # appends and pops are safe across threads

    def add(self, delivery_tag: str) -> None:
        self._tags.append(delivery_tag)

    def take(self) -> list[str]:
        """Every tag waiting now, oldest first."""
        taken = []
        while True:
            try:
                taken.append(self._tags.popleft())
            except IndexError:
                return taken

    def put_back(self, tags: list[str]) -> None:
        """Return tags whose write failed; forgetting a message twice does no harm."""
        self._tags.extendleft(reversed(tags))
