"""Intake's envelopes against what Celery itself publishes, on both broker transports.

Intake writes task messages into Redis itself (notifier.broker.envelopes). A worker cannot tell
them from Celery's own only if every field matches: these tests publish through
Celery's `send_task` onto the test Redis, read the raw message back, and compare it
field by field with intake's envelope for the same task, arguments, queue and id.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery

import notifier.broker.app  # connects the before_task_publish handler)
import notifier.worker.tasks  # noqa: F401  (shared tasks: registered in every app that finalizes)
from notifier.broker.envelopes import task_message
from notifier.broker.queues import CAMPAIGNS_QUEUE, CHUNK_TASK, MESSAGES_QUEUE, SEND_TASK
from notifier.devtools.redis_server import RedisServer

# kombu's stock Redis transport and ours, by class: celeryconfig may register ours under
# kombu's own `redis` name (notifier/broker/plugin.py).
TRANSPORTS = ["kombu.transport.redis:Transport", "notifier.broker.transport:Transport"]

OPENID = "oF1_follower_openid"
SECRET_DATA = "order 12345, 50% off"
PAYLOAD = {
    "id": "m1",
    "touser": OPENID,
    "template_id": "tpl",
    "data": {"thing1": {"value": SECRET_DATA}, "thing2": {"value": "满减"}},
    "client_msg_id": "m1",
}
CHUNK = {
    "batch": "b1",
    "template_id": "tpl",
    "data": {"thing1": {"value": SECRET_DATA}},
    "recipients": [[0, OPENID, None], [1, "oF2_other", {"thing2": {"value": SECRET_DATA}}]],
}

# Fields whose values differ between any two publishes, or with who publishes, and so
# are compared by kind only (present on both sides, same JSON type); each with why:
PER_PUBLISH = {
    # A fresh UUID for every publish, on either side (kombu's _next_delivery_tag, intake's
    # uuid4): kombu records a message it has handed to a worker under it.
    ("properties", "delivery_tag"),
    # Celery's send_task fills in the publishing thread's id (app.thread_oid) as where
    # replies go; only an RPC result backend reads it, and results are ignored here.
    # Intake's says "", what Celery's as_task_v2 says when no reply queue is given.
    ("properties", "reply_to"),
    # When the work was queued: the reconciler dates a queue's head by it. Celery's
    # publishes get it from notifier.broker.app's publish signal.
    ("headers", "queued_at"),
}
# Not excluded: "body" is compared decoded (the JSON spacing inside the base64 differs:
# intake's is compact); "origin" is equal, as both publish from this process.


@pytest.fixture(params=TRANSPORTS)
def celery(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Celery]:
    """A Celery app with the project's settings, publishing to the test Redis."""
    app = Celery("contract", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=redis_server.url, broker_transport=request.param)
    app.finalize()
    with app.connection_for_write() as connection:
        used = connection.get_transport_cls()
    assert f"{used.__module__}:{used.__name__}" == request.param
    yield app
    app.close()


def _fields(envelope: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """Every field of an envelope by its path: top level, headers, properties; body decoded."""
    fields: dict[tuple[str, ...], Any] = {}
    for key, value in envelope.items():
        if key in ("headers", "properties"):
            fields.update({(key, name): inner for name, inner in value.items()})
        elif key == "body":
            fields[(key,)] = json.loads(base64.b64decode(value))
        else:
            fields[(key,)] = value
    return fields


@pytest.mark.parametrize(
    ("task", "queue", "args"),
    [(SEND_TASK, MESSAGES_QUEUE, [PAYLOAD]), (CHUNK_TASK, CAMPAIGNS_QUEUE, [CHUNK])],
)
def test_intake_writes_the_envelope_celery_would_publish(
    celery: Celery, redis_client: redis.Redis, task: str, queue: str, args: list[Any]
) -> None:
    task_id = str(uuid.uuid4())
    # ignore_result=True: what Task.apply_async says for our tasks, which all declare it;
    # send_task by name alone says null ("the task's own setting", True all the same).
    celery.send_task(task, args=args, queue=queue, task_id=task_id, ignore_result=True)
    [raw] = redis_client.lrange(queue, 0, -1)
    published, ours = json.loads(raw), json.loads(task_message(task, args, queue, task_id))

    theirs, mine = _fields(published), _fields(ours)
    # The same keys at every level: one added, removed or renamed on either side fails.
    assert sorted(set(mine) ^ set(theirs)) == []
    assert set(theirs) >= PER_PUBLISH
    for path, value in theirs.items():
        if path in PER_PUBLISH:
            assert type(mine[path]) is type(value), path
        else:
            assert mine[path] == value, path
    # The per-publish values are what they should be, all the same.
    tag = ours["properties"]["delivery_tag"]
    assert str(uuid.UUID(tag)) == tag != task_id
    assert ours["properties"]["reply_to"] == ""


def _published_headers(client: redis.Redis, queue: str) -> tuple[dict[str, Any], list[Any]]:
    [raw] = client.lrange(queue, 0, -1)
    envelope = json.loads(raw)
    return envelope["headers"], json.loads(base64.b64decode(envelope["body"]))


def _retry(app: Celery, payload: dict[str, Any]) -> None:
    """A task's self.retry (autoretry calls it too), as inside a worker."""
    task = app.tasks[SEND_TASK]
    task.push_request(id="m1", args=[payload], kwargs={}, retries=0, called_directly=False,
                      delivery_info={"routing_key": MESSAGES_QUEUE, "exchange": ""})  # fmt: skip
    try:
        task.retry(countdown=30, throw=False)
    finally:
        task.pop_request()


PUBLISHES: dict[str, Callable[[Celery], object]] = {
    "send_task": lambda app: app.send_task(SEND_TASK, args=[PAYLOAD], queue=MESSAGES_QUEUE),
    "apply_async": lambda app: app.tasks[SEND_TASK].apply_async((PAYLOAD,), countdown=5),
    "retry": lambda app: _retry(app, PAYLOAD),
}


@pytest.mark.parametrize("publish", PUBLISHES)
def test_what_celery_publishes_for_a_message_names_only_its_id(
    celery: Celery, redis_client: redis.Redis, publish: str
) -> None:
    PUBLISHES[publish](celery)
    headers, body = _published_headers(redis_client, MESSAGES_QUEUE)
    assert (headers["argsrepr"], headers["kwargsrepr"]) == ("('m1',)", "{}")
    text = json.dumps(headers, ensure_ascii=False)
    assert OPENID not in text and "12345" not in text and "满减" not in text
    assert body[0] == [PAYLOAD]  # the task itself still gets all of it


def test_a_chunk_names_its_batch_and_keyword_arguments_are_hidden(
    celery: Celery, redis_client: redis.Redis
) -> None:
    celery.send_task(CHUNK_TASK, args=[CHUNK], queue=CAMPAIGNS_QUEUE)
    headers, _ = _published_headers(redis_client, CAMPAIGNS_QUEUE)
    assert (headers["argsrepr"], headers["kwargsrepr"]) == ("('b1',)", "{}")
    redis_client.delete(CAMPAIGNS_QUEUE)
    celery.send_task(SEND_TASK, kwargs={"payload": PAYLOAD}, queue=MESSAGES_QUEUE)
    headers, _ = _published_headers(redis_client, MESSAGES_QUEUE)
    assert (headers["argsrepr"], headers["kwargsrepr"]) == ("()", "{}")


def test_other_tasks_keep_celerys_own_repr(celery: Celery, redis_client: redis.Redis) -> None:
    celery.send_task("elsewhere.add", args=[1, 2], kwargs={"z": 3}, queue=MESSAGES_QUEUE)
    headers, _ = _published_headers(redis_client, MESSAGES_QUEUE)
    assert (headers["argsrepr"], headers["kwargsrepr"]) == ("[1, 2]", "{'z': 3}")
