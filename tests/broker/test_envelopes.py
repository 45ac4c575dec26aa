"""Intake's task envelopes, as kombu and Celery's worker read them off the test Redis.

tests/test_envelope_contract.py compares them with what Celery publishes; here they are
pushed as the admission script pushes them and taken by kombu's own code, on both
transports, as a worker would take them.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.worker.request import Request

from notifier.broker import envelopes as broker
from notifier.broker.app import app
from notifier.broker.envelopes import args_summary, task_args, task_message
from notifier.broker.queues import MESSAGES_QUEUE, SEND_TASK
from notifier.devtools.redis_server import RedisServer

ARGS = [{"id": "m1", "touser": "oF1", "data": {"thing1": {"value": "50% off, 满减"}}}]
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.fixture(params=["kombu.transport.redis:Transport", "notifier.broker.transport:Transport"])
def channel(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Any]:
    """A channel of kombu's stock Redis transport, or of ours, with the project's options.

    By class: celeryconfig may register ours under kombu's own `redis` name.
    """
    with app.connection_for_write(redis_server.url, transport=request.param) as connection:
        channel = connection.default_channel
        kind = type(channel.connection)
        assert f"{kind.__module__}:{kind.__name__}" == request.param
        yield channel


def _take(channel: Any) -> Any:
    """The next message of the queue, as kombu hands it to a worker (unacknowledged)."""
    message = channel.basic_get(MESSAGES_QUEUE, no_ack=False, accept=["json"])
    assert message is not None
    return message


def test_a_worker_reads_an_envelope_as_celery_would_have_sent_it(
    channel: Any, redis_client: redis.Redis
) -> None:
    import notifier.worker.tasks  # noqa: F401  (registers the tasks with the app)

    redis_client.lpush(MESSAGES_QUEUE, task_message(SEND_TASK, ARGS, MESSAGES_QUEUE, "t1"))
    message = _take(channel)
    assert message.decode() == [ARGS, {}, EMBED]
    assert message.delivery_info == {"exchange": "", "routing_key": MESSAGES_QUEUE}
    assert redis_client.hexists(channel.unacked_key, message.delivery_tag)

    request = Request(message, app=app, task=app.tasks[SEND_TASK])
    assert (request.id, request.root_id, request.correlation_id) == ("t1", "t1", "t1")
    assert (request.task_name, request.args, request.kwargs) == (SEND_TASK, ARGS, {})
    # Flower and the worker's events show the message id, never the follower or the data.
    assert (request.argsrepr, request.kwargsrepr) == ("('m1',)", "{}")
    assert request.ignore_result is True
    assert request.eta is None and request.expires is None

    message.ack()
    assert redis_client.hlen(channel.unacked_key) == 0


def test_the_same_task_published_twice_is_held_twice(
    channel: Any, redis_client: redis.Redis
) -> None:
    # A re-publish under the same task id (the reconciler's) gets its own delivery tag, so
    # kombu's record of one copy is not overwritten, nor acknowledged, by the other's.
    for _ in range(2):
        redis_client.lpush(MESSAGES_QUEUE, task_message(SEND_TASK, ARGS, MESSAGES_QUEUE, "t1"))
    first, second = _take(channel), _take(channel)
    assert first.headers["id"] == second.headers["id"] == "t1"
    assert len({first.delivery_tag, second.delivery_tag, "t1"}) == 3
    assert redis_client.hlen(channel.unacked_key) == 2
    first.ack()
    assert redis_client.hkeys(channel.unacked_key) == [second.delivery_tag.encode()]
    second.ack()


def test_each_envelope_gets_its_own_parts_from_the_shared_template() -> None:
    first = json.loads(task_message("t", [{"batch": "b1"}], "q"))
    second = json.loads(task_message("t", [{"batch": "b2"}], "q"))
    ids = {first["headers"]["id"], second["headers"]["id"]}
    tags = {first["properties"]["delivery_tag"], second["properties"]["delivery_tag"]}
    assert len(ids | tags) == 4  # fresh task ids when none is given, fresh tags always
    for value in ids | tags:
        parsed = uuid.UUID(value)
        assert (str(parsed), parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)
    assert first["headers"]["root_id"] == first["properties"]["correlation_id"]
    assert first["properties"]["correlation_id"] == first["headers"]["id"]
    assert (first["headers"]["argsrepr"], second["headers"]["argsrepr"]) == ("('b1',)", "('b2',)")
    assert task_args(task_message("t", [{"batch": "b3"}], "q")) == ("t", [{"batch": "b3"}])


def test_the_payload_appears_only_in_the_body() -> None:
    raw = task_message(SEND_TASK, ARGS, MESSAGES_QUEUE, "t1")
    envelope = json.loads(raw)
    assert "oF1" not in raw and "thing1" not in raw
    assert json.loads(base64.b64decode(envelope["body"]))[0] == ARGS


def test_percent_signs_in_names_do_not_break_the_template() -> None:
    envelope = json.loads(task_message("task%s", [{"id": "x%(id)s"}], "q%d", "i%"))
    assert envelope["headers"]["task"] == "task%s"
    assert envelope["properties"]["delivery_info"]["routing_key"] == "q%d"
    assert envelope["headers"]["id"] == "i%"
    assert envelope["headers"]["argsrepr"] == "('x%(id)s',)"


def test_the_template_is_built_once_and_without_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    published = broker._published

    def counted(task: str, queue: str) -> dict[str, Any]:
        built.append((task, queue))
        return published(task, queue)

    def refuse(*_: Any) -> None:
        raise AssertionError("building the template must not connect anywhere")

    broker._template.cache_clear()
    monkeypatch.setattr(broker, "_published", counted)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    try:
        for n in range(3):
            assert task_args(task_message(SEND_TASK, [{"id": n}], MESSAGES_QUEUE))[1] == [{"id": n}]
    finally:
        broker._template.cache_clear()
    assert built == [(SEND_TASK, MESSAGES_QUEUE)]


@pytest.mark.parametrize(
    ("args", "summary"),
    [
        ([], "()"),
        ([{"id": "m1", "touser": "oF1"}], "('m1',)"),
        ([{"batch": "b1", "recipients": [[0, "oF1", None]]}], "('b1',)"),
        ([{"touser": "oF1"}], "('',)"),
        ([{"id": {"touser": "oF1"}}], "('',)"),
        (["oF1", 2], "('',)"),
    ],
)
def test_the_summary_names_the_message_or_batch_id_only(args: list[Any], summary: str) -> None:
    assert args_summary(args) == summary
