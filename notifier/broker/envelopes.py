"""Celery task messages written straight into Redis, so intake is one atomic round trip.

A Celery worker consuming from Redis reads a JSON envelope pushed onto a list named
after the queue. Writing that envelope ourselves, in the same Lua script that records
the message and its idempotency key, makes "accepted" and "queued" one atomic step,
and costs a fraction of a publish through the full client stack.

The envelope is not written by hand: once per process, task and queue, Celery builds
the message (`app.amqp.as_task_v2`) and kombu's own `Producer.publish` runs it through
the configured transport's channel up to the point where the channel would push it
onto the list. That message, with marks where the per-message parts go, becomes the
template; each envelope is then string formatting only.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import time
from collections.abc import Sequence
from typing import Any

# The parts of an envelope that change per message, each a mark while the template is
# built: the body (base64, already JSON-safe), the task id (headers.id and root_id,
# properties.correlation_id), the delivery tag (a fresh UUID) and Flower's argsrepr.
# The queued_at header (Unix time) dates the envelope: the reconciler reads the oldest at
# the head of a queue to tell what still waits from what was lost.
_MARKS = {
    name: f"@@{name}@@" for name in ("body", "task_id", "delivery_tag", "argsrepr", "queued_at")
}
QUEUED_AT = "queued_at"
# Where the task's positional arguments go in the body, while the template is built.
_ARGS_MARK = "@@args@@"
_COMPACT = (",", ":")


def task_message(
    task: str,
    args: list[Any],
    queue: str,
    task_id: str | None = None,
    queued_at: float | None = None,
) -> str:
    """The JSON envelope a worker will read for `task(*args)` from `queue`.

    `task_id` (a fresh UUID when not given) names the task in Flower and the status API;
    the delivery tag, under which kombu records the message while a worker holds it, is
    a fresh UUID for every envelope, so publishing the same task again cannot collide.
    `queued_at` (now when not given) is the time the push records the work as queued.
    """
    template, body = _template(task, queue)
    text = body % json.dumps(args, separators=_COMPACT, ensure_ascii=False)
    return template % {
        "body": base64.b64encode(text.encode()).decode(),
        "task_id": json.dumps(task_id or _fresh_uuid()),
        "delivery_tag": _fresh_uuid(),
        "argsrepr": json.dumps(args_summary(args)),
        "queued_at": repr(round(time.time() if queued_at is None else queued_at, 3)),
    }


# The first digit of a UUID's fourth group: two random bits under RFC 4122's variant bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _fresh_uuid() -> str:
    """A random (version 4) UUID as text: what str(uuid.uuid4()) gives, in half the time."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def args_summary(args: Sequence[Any]) -> str:
    """What Flower and the logs show for a task's arguments: the message or campaign id only.

    A task's arguments carry a follower's openid and the template data, which must not
    spread to every place Celery copies its `argsrepr` header.
    """
    if not args:
        return "()"
    first = args[0]
    ident = (first.get("id") or first.get("batch")) if isinstance(first, dict) else None
    return f"({ident if isinstance(ident, str) else ''!r},)"


def queued_at(raw: bytes | str) -> float | None:
    """When an envelope was queued, from its queued_at header; None if it has none."""
    try:
        stamp = json.loads(raw)["headers"][QUEUED_AT]
    except (ValueError, KeyError, TypeError):
        return None
    return float(stamp) if isinstance(stamp, int | float) else None


def task_args(raw: bytes | str) -> tuple[str, list[Any]]:
    """Read back the task name and arguments of an envelope (tests and tools)."""
    envelope = json.loads(raw)
    args, _, _ = json.loads(base64.b64decode(envelope["body"]))
    return envelope["headers"]["task"], args


@functools.cache
def _template(task: str, queue: str) -> tuple[str, str]:
    """The envelope as JSON text with a %-slot per message part, and the body's format.

    Everything else is the same for every envelope of a task and queue in this process
    (its origin names the process), so it is built once, by Celery and kombu themselves.
    """
    message = _published(task, queue)
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    if args != [_ARGS_MARK]:
        raise RuntimeError(f"unexpected task body from Celery: {args!r}")
    body = json.dumps([_ARGS_MARK, kwargs, embed], separators=_COMPACT).replace("%", "%%")
    message["body"] = _MARKS["body"]
    text = json.dumps(message, separators=_COMPACT).replace("%", "%%")
    # The body and the delivery tag need no JSON escaping: their slots sit inside quotes.
    for name in ("body", "delivery_tag"):
        text = text.replace(_MARKS[name], f"%({name})s")
    for name in ("task_id", "argsrepr", "queued_at"):
        text = text.replace(json.dumps(_MARKS[name]), f"%({name})s")
    if any(mark in text for mark in _MARKS.values()) or f'"{_ARGS_MARK}"' not in body:
        raise RuntimeError(f"a per-message part was not where expected: {text}")
    return text, body.replace(f'"{_ARGS_MARK}"', "%s")


def _published(task: str, queue: str) -> dict[str, Any]:
    """What the configured transport would push onto `queue` for `task`, with marks.

    Celery's `send_task` routes a task for a named queue to the anonymous exchange with
    the queue's name as routing key, and hands kombu's Producer the headers, properties
    and body that `as_task_v2` builds; the same is done here, through a channel of the
    configured transport that keeps the message instead of pushing it. Nothing connects.
    """
    from notifier.broker.app import app

    conf = app.conf
    headers, properties, body, _ = app.amqp.as_task_v2(
        _MARKS["task_id"], task, args=[_ARGS_MARK], kwargs={},
        argsrepr=_MARKS["argsrepr"], ignore_result=conf.task_ignore_result,
    )  # fmt: skip
    headers[QUEUED_AT] = _MARKS["queued_at"]  # as the publish signal adds (celery_app)
    with app.connection_for_write() as connection:
        channel = _keeping_channel(connection.get_transport_cls().Channel)
        options = connection.transport_options
    channel.body_encoding = options.get("body_encoding", channel.body_encoding)
    exchange = getattr(app.amqp.queues.get(queue), "exchange", None)
    app.amqp.Producer(channel, auto_declare=False).publish(
        body, exchange="", routing_key=queue,
        delivery_mode=getattr(exchange, "delivery_mode", None) or conf.task_default_delivery_mode,
        serializer=conf.task_serializer, compression=conf.task_compression,
        headers=headers, retry=False, declare=[], **properties,
    )  # fmt: skip
    kept: list[dict[str, Any]] = channel.kept
    [message] = kept
    # Each envelope's body is encoded here as kombu would: JSON, UTF-8, then base64.
    encoding = (message["content-type"], message["content-encoding"],
                message["properties"].get("body_encoding"), headers.get("compression"))  # fmt: skip
    if encoding != ("application/json", "utf-8", "base64", None):
        raise RuntimeError(f"task bodies must be JSON in base64, uncompressed, not {encoding}")
    return message


def _keeping_channel(channel_cls: type) -> Any:
    """A channel of `channel_cls` that keeps what it would publish, with no connection."""

    class Keeping(channel_cls):  # type: ignore[misc]
        def __init__(self) -> None:  # no connection: kombu's own __init__ opens one
            self.kept: list[dict[str, Any]] = []

        def _next_delivery_tag(self) -> str:
            return _MARKS["delivery_tag"]

        def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
            self.kept.append(message)

    return Keeping()


# A forked child is another process: its envelopes name it as their origin.
os.register_at_fork(after_in_child=_template.cache_clear)
