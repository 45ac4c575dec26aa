"""The task envelopes intake writes itself must be what Celery's Redis transport would write."""

from __future__ import annotations

import base64
import json
import os

from notifier.broker import task_args, task_message

ARGS = [{"id": "m1", "touser": "oF1", "data": {"thing1": {"value": "50% off, 满减"}}}]


def test_an_envelope_is_celery_protocol_2_as_the_redis_transport_stores_it() -> None:
    envelope = json.loads(task_message("notifier.send_template", ARGS, "notifier.messages", "t1"))
    headers, properties = envelope["headers"], envelope["properties"]
    assert headers["task"] == "notifier.send_template"
    assert headers["id"] == headers["root_id"] == properties["correlation_id"] == "t1"
    assert properties["delivery_tag"] == "t1"
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "notifier.messages"}
    assert properties["body_encoding"] == "base64"
    assert headers["argsrepr"] == "('m1',)"  # Flower shows the id, never the payload
    assert headers["origin"].endswith(f":{os.getpid()}")
    args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
    assert (args, kwargs) == (ARGS, {})
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_each_envelope_gets_its_own_parts_from_the_shared_template() -> None:
    first = json.loads(task_message("t", [{"batch": "b1"}], "q"))
    second = json.loads(task_message("t", [{"batch": "b2"}], "q"))
    assert first["headers"]["id"] != second["headers"]["id"]  # fresh ids when none is given
    assert first["properties"]["delivery_tag"] == first["headers"]["id"]
    assert (first["headers"]["argsrepr"], second["headers"]["argsrepr"]) == ("('b1',)", "('b2',)")
    assert task_args(task_message("t", [{"batch": "b3"}], "q")) == ("t", [{"batch": "b3"}])


def test_percent_signs_in_names_do_not_break_the_template() -> None:
    envelope = json.loads(task_message("task%s", [{"id": "x%(id)s"}], "q%d", "i%"))
    assert envelope["headers"]["task"] == "task%s"
    assert envelope["properties"]["delivery_info"]["routing_key"] == "q%d"
    assert envelope["headers"]["id"] == "i%"
    assert envelope["headers"]["argsrepr"] == "('x%(id)s',)"
