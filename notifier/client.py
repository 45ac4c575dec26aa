"""A signed-request client for the notifier API: what the CLI, the tests and the benchmark use."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests

from notifier.signature import signed_headers


class NotifierClient:
    """Posts Standard Webhooks-signed messages to a notifier receiver."""

    def __init__(self, base_url: str, secret: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._session = session or requests.Session()

    def post_message(
        self, message: dict[str, Any], webhook_id: str | None = None, timeout: float = 10
    ) -> requests.Response:
        """Sign and POST one message to /v1/messages; return the raw response."""
        return self._post("/v1/messages", message, webhook_id, timeout)

    def post_batch(
        self, batch: dict[str, Any], webhook_id: str | None = None, timeout: float = 60
    ) -> requests.Response:
        """Sign and POST one campaign to /v1/messages/batch; return the raw response."""
        return self._post("/v1/messages/batch", batch, webhook_id, timeout)

    def _post(
        self, path: str, document: dict[str, Any], webhook_id: str | None, timeout: float
    ) -> requests.Response:
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = signed_headers(self._secret, webhook_id or f"msg_{uuid.uuid4().hex}", body)
        headers["Content-Type"] = "application/json"
        return self._session.post(
            f"{self.base_url}{path}", data=body, headers=headers, timeout=timeout
        )


def template_message(
    touser: str, template_id: str, fields: dict[str, str], url: str | None = None
) -> dict[str, Any]:
    """Build a message body from plain key=value fields."""
    message: dict[str, Any] = {
        "touser": touser,
        "template_id": template_id,
        "data": {key: {"value": value} for key, value in fields.items()},
    }
    if url:
        message["url"] = url
    return message
