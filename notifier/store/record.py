"""A message's record as operators see it: status, attempts, last error and history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# How long a store keeps records when it is not told (STATUS_RETENTION_DAYS): a week.
DEFAULT_RETENTION = 7 * 24 * 3600


@dataclass
class MessageRecord:
    """A message's status as stored, for the status API and the CLI."""

    id: str
    status: str
    attempts: int = 0
    msgid: int | None = None
    errcode: int | None = None
    errmsg: str | None = None
    payload: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    send_at: str | None = None  # as signed, for a message that was scheduled

    def as_dict(self, with_payload: bool = False) -> dict[str, Any]:
        """The JSON view shown by the status API and the CLI; times in ISO 8601 UTC."""
        view: dict[str, Any] = {"id": self.id, "status": self.status, "attempts": self.attempts}
        if self.send_at:
            view["send_at"] = self.send_at
        if self.msgid is not None:
            view["msgid"] = self.msgid
        if self.errcode is not None:
            view["errcode"] = self.errcode
        if self.errmsg:
            view["errmsg"] = self.errmsg
        view["history"] = [{**h, "at": iso(h["at"])} for h in self.history]
        if with_payload and self.payload is not None:
            view["payload"] = self.payload
        return view


def iso(timestamp: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
