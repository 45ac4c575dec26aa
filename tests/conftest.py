"""Shared fixtures: a private Redis on a free port, settings, and a signing helper."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from notifier import logs
from notifier.broker.envelopes import task_args
from notifier.config import Settings
from notifier.devtools.redis_server import RedisServer
from notifier.signature import new_secret, signed_headers
from notifier.store.keys import PREFIX, campaign_key, message_key

SECRET = new_secret()
# A valid message body, as a business system would post it.
GOOD = {
    "touser": "oUser0001",
    "template_id": "TPL_1",
    "data": {"thing1": {"value": "Shipped"}},
}


@pytest.fixture(autouse=True)
def fresh_log_context() -> None:
    """Each test starts with no log fields bound, as each request and task does."""
    logs.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run, never the user's own."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an emptied database."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        wechat_app_id="wx_test_app",
        wechat_app_secret="test_secret",
        wechat_api_base="https://wechat.test",
        webhook_secrets=(SECRET,),
    )


def signed(
    body: Any, secret: str = SECRET, msg_id: str = "msg_1", now: float | None = None
) -> dict[str, Any]:
    """Keyword arguments for a test-client POST of `body`, signed."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signed_headers(secret, msg_id, raw, now=now)
    return {"data": raw, "headers": headers, "content_type": "application/json"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "integration":
            item.add_marker(pytest.mark.integration)


class Clock:
    """A hand-moved clock, for code that takes a `clock` callable."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class QueueView:
    """The tasks really waiting in a Redis queue, in the order workers will take them."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self._client = client
        self._queue = queue

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The task arguments as queued: ids and references."""
        raw = reversed(self._client.lrange(self._queue, 0, -1))
        return [task_args(item)[1][0] for item in raw]

    @property
    def published(self) -> list[dict[str, Any]]:
        """What each queued task names: a message's stored payload, a chunk's recipients."""
        return [self._resolve(arg) for arg in self.tasks]

    def _resolve(self, arg: dict[str, Any]) -> dict[str, Any]:
        if "chunk" in arg:
            stored = self._client.hget(
                campaign_key(PREFIX, arg["batch"], "chunks"), str(arg["chunk"])
            )
            return {**json.loads(stored), "chunk": arg["chunk"]} if stored else arg
        if "touser" not in arg:
            stored = self._client.hget(message_key(PREFIX, arg["id"]), "payload")
            return dict(json.loads(stored)) if stored else arg
        return arg

    @property
    def down(self) -> bool:
        return bool(self._client.type(self._queue) == b"string")

    @down.setter
    def down(self, value: bool) -> None:
        # A key of the wrong type makes the push fail inside the admission script, as an
        # unreachable broker would, before anything else is written.
        self._client.delete(self._queue)
        if value:
            self._client.set(self._queue, "not a list")
