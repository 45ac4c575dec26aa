"""Celery task messages written straight into Redis, so intake is one atomic round trip.

A Celery worker consuming from Redis reads a JSON envelope pushed onto a list named
after the queue. Writing that envelope ourselves, in the same Lua script that records
the message and its idempotency key, makes "accepted" and "queued" one atomic step,
and costs a fraction of a publish through the full client stack.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import uuid
from typing import Any

# Celery's message protocol 2, as its Redis transport stores it.
_ORIGIN = f"notifier@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# The parts of an envelope that change per message, each a JSON value in the template.
_SLOTS = ("body", "task_id", "argsrepr")


def task_message(task: str, args: list[Any], queue: str, task_id: str | None = None) -> str:
    """The JSON envelope a worker will read for `task(*args)` from `queue`.

    `task_id` (a fresh UUID when not given) names the task in Flower and doubles as
    the delivery tag, so it must be unique to this envelope.
    """
    body = json.dumps([args, {}, _EMBED], separators=(",", ":"), ensure_ascii=False)
    return _template(task, queue, os.getpid()) % {
        "body": json.dumps(base64.b64encode(body.encode()).decode()),
        "task_id": json.dumps(task_id or str(uuid.uuid4())),
        "argsrepr": json.dumps(_summary(args)),
    }


@functools.cache
def _template(task: str, queue: str, pid: int) -> str:
    """The envelope as JSON text with a %-slot for each per-message part.

    Everything else is the same for every envelope of a task and queue, so it is
    encoded once per process instead of once per message.
    """
    envelope = _envelope(task, queue, pid, **{name: f"@@{name}@@" for name in _SLOTS})
    text = json.dumps(envelope, separators=(",", ":")).replace("%", "%%")
    for name in _SLOTS:
        text = text.replace(f'"@@{name}@@"', f"%({name})s")
    return text


def _envelope(
    task: str, queue: str, pid: int, body: str, task_id: str, argsrepr: str
) -> dict[str, Any]:
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "origin": f"{_ORIGIN}:{pid}",
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": task_id,
        },
    }


# Each message pushed onto a queue also pushes a token onto this list, and an idle worker
# waits on the list (BLPOP): one token wakes one worker, where waiting on the queue itself
# would wake every idle worker of it. Tokens beyond this many wake nobody more usefully.
WAKE_TOKENS_MAX = 256
# Each push renews the list's expiry, so the list of a queue that went away (Celery's reply
# queues expire) goes too. Tokens are hints: a wait that times out pulls all the same.
WAKE_TOKENS_TTL = 60


def wake_key(queue: str) -> str:
    """The list of wake-up tokens for `queue`'s idle workers."""
    return f"{queue}:wake"


def task_args(raw: bytes | str) -> tuple[str, list[Any]]:
    """Read back the task name and arguments of an envelope (tests and tools)."""
    envelope = json.loads(raw)
    args, _, _ = json.loads(base64.b64decode(envelope["body"]))
    return envelope["headers"]["task"], args


def _summary(args: list[Any]) -> str:
    """What Flower shows for the task: the message or batch id, never the payload."""
    first = args[0] if args and isinstance(args[0], dict) else {}
    ident = first.get("id") or first.get("batch") or ""
    return f"({ident!r},)"
