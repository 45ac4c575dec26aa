"""Choosing the broker transport (BROKER_TRANSPORT), and checking kombu for notifier's own.

`fast` registers notifier/broker/transport.py under kombu's own names for Redis, so the broker
URL and `Connection.as_uri()` stay `redis://` (Flower reads queue lengths from Redis
only for such a URL); `kombu` leaves kombu's stock Redis transport in place.

notifier/broker/transport.py subclasses kombu's Redis transport and relies on names that are
not kombu's public API (KOMBU_NAMES). It checks them when it is imported, which is when
kombu first resolves `redis://` in a process (its first broker Connection: a worker,
beat or Flower at start-up, the web app at its first publish through Celery): a kombu
without them, or of another series, stops the process with one line.

celeryconfig imports this module: it imports neither redis nor kombu's Redis transport
at import (see tests/test_config.py), only when it checks.
"""

from __future__ import annotations

import dis
import importlib
import inspect
from typing import Any

from notifier.config import exit_on
from notifier.errors import ConfigError

FAST = "notifier.broker.transport:Transport"
_STOCK = "kombu.transport.redis:Transport"
_SCHEMES = ("redis", "rediss")

# The kombu series notifier/broker/transport.py was written for (and tested with).
KOMBU_SERIES = (5, 7)

# Every name of kombu's that notifier/broker/transport.py calls, overrides or reads, and what it
# must still take or mention there: (owner, name, uses). An owner is "module:Class" or a
# module; a name is an attribute of the class (a method, property or class attribute) or
# one its __init__ sets. `uses` are parameters or names its code must mention (for a
# function), or members it must hold (for a tuple or dict).
KOMBU_NAMES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # QoS: what the subclass overrides, and the base methods it calls past kombu's.
    ("kombu.transport.redis:QoS", "append", ("message", "delivery_tag")),
    ("kombu.transport.redis:QoS", "ack", ("delivery_tag",)),
    ("kombu.transport.redis:QoS", "reject", ("delivery_tag", "requeue")),
    ("kombu.transport.redis:QoS", "restore_visible", ("start", "num", "interval")),
    ("kombu.transport.redis:QoS", "restore_by_tag", ("tag", "client", "leftmost")),
    ("kombu.transport.virtual:QoS", "append", ("message", "delivery_tag")),
    ("kombu.transport.virtual:QoS", "ack", ("delivery_tag",)),
    ("kombu.transport.virtual:QoS", "channel", ()),
    ("kombu.transport.virtual:QoS", "can_consume_max_estimate", ()),
    # Channel: the consuming loop's hooks, which the poller calls.
    ("kombu.transport.redis:Channel", "QoS", ()),
    ("kombu.transport.redis:Channel", "__init__", ("handlers", "_brpop_read")),
    ("kombu.transport.redis:Channel", "_brpop_start", ("timeout",)),
    ("kombu.transport.redis:Channel", "_brpop_read", ("options",)),
    ("kombu.transport.redis:Channel", "_flush_brpop_reauth", ()),
    ("kombu.transport.redis:Channel", "_in_poll", ()),
    ("kombu.transport.redis:Channel", "_brpop_sent_at", ()),
    ("kombu.transport.redis:Channel", "brpop_timeout", ()),
    ("kombu.transport.redis:Channel", "_queue_cycle", ()),
    ("kombu.utils.scheduling:round_robin_cycle", "consume", ("n",)),
    ("kombu.utils.scheduling:round_robin_cycle", "rotate", ("last_used",)),
    ("kombu.transport.redis:Channel", "active_queues", ()),
    ("kombu.transport.redis:Channel", "connection_errors", ()),
    ("kombu.transport.redis:Channel", "client", ()),
    # Channel: clients, keys and the unacknowledged-message bookkeeping.
    ("kombu.transport.redis:Channel", "_create_client", ("asynchronous",)),
    ("kombu.transport.redis:Channel", "pool", ()),
    ("kombu.transport.redis:Channel", "conn_or_acquire", ()),
    ("kombu.transport.redis:Channel", "unacked_key", ()),
    ("kombu.transport.redis:Channel", "unacked_index_key", ()),
    ("kombu.transport.redis:Channel", "global_keyprefix", ()),
    ("kombu.transport.redis:Channel", "priority_steps", ()),
    ("kombu.transport.redis:Channel", "sep", ()),
    ("kombu.transport.redis:Channel", "_q_for_pri", ("queue", "pri")),
    # The transport options celeryconfig gives that the transport reads.
    ("kombu.transport.redis:Channel", "from_transport_options", ("priority_steps",)),
    ("kombu.transport.virtual:Channel", "qos", ()),
    ("kombu.transport.virtual:Channel", "connection", ()),
    # Channel: publishing, alone or in kombu's publish batch.
    ("kombu.transport.redis:Channel", "_put", ("queue", "message", "_publish_batch")),
    ("kombu.transport.redis:Channel", "_expires", ()),
    ("kombu.transport.virtual:Channel", "_get_message_priority", ("message", "reverse")),
    ("kombu.transport.redis:PublishBatch", "add", ("name",)),
    # Transport.
    ("kombu.transport.redis:Transport", "Channel", ()),
    ("kombu.transport.virtual:Transport", "_deliver", ("message", "queue")),
    # The registration under kombu's names (this module).
    ("kombu.transport", "TRANSPORT_ALIASES", _SCHEMES),
    ("kombu.transport", "_transport_cache", ()),
)


def install(choice: str) -> None:
    """Use the chosen transport (Settings.broker_transport) for `redis://` and `rediss://`.

    Call it before the process's first broker connection: kombu keeps the class it
    resolves for a name. `kombu` puts kombu's own back only if `fast` was installed before
    in this process (tests); in a new process it changes nothing.
    """
    from kombu import transport

    wanted, other = (FAST, _STOCK) if choice == "fast" else (_STOCK, FAST)
    for scheme in _SCHEMES:
        if transport.TRANSPORT_ALIASES.get(scheme) == other:  # any other class is left be
            transport.TRANSPORT_ALIASES[scheme] = wanted
            # kombu caches a transport class by name at the first connection.
            transport._transport_cache.pop(scheme, None)


def broker_url(redis_url: str) -> str:
    """The broker URL for REDIS_URL: kombu spells a Unix socket `redis+socket://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def missing() -> list[str]:
    """The names notifier/broker/transport.py needs and the installed kombu lacks.

    A name whose code no longer takes or mentions what the transport passes or relies
    on is given with those, as `Channel._put(_publish_batch)`.
    """
    lacking = []
    for owner, name, uses in KOMBU_NAMES:
        where = f"{owner.replace(':', '.')}.{name}"
        try:
            found = _lookup(owner, name)
        except (ImportError, AttributeError):
            lacking.append(where)
            continue
        known = _mentions(found)
        gone = [use for use in uses if use not in known]
        if gone:
            lacking.append(f"{where}({', '.join(gone)})")
    return lacking


def check() -> None:
    """Raise ConfigError, in one line, if the installed kombu is not one the transport fits."""
    import kombu

    problems = []
    if tuple(kombu.VERSION[:2]) != KOMBU_SERIES:
        series = ".".join(map(str, KOMBU_SERIES))
        problems.append(f"notifier's transport is written for kombu {series}.x")
    lacking = missing()
    if lacking:
        problems.append(f"kombu lacks {', '.join(lacking)}")
    if problems:
        raise ConfigError(
            f"BROKER_TRANSPORT=fast does not fit the installed kombu {kombu.__version__}: "
            f"{'; '.join(problems)}; set BROKER_TRANSPORT=kombu to use kombu's stock Redis "
            "transport"
        )


def require() -> None:
    """Stop the process with that line, as other start-up errors do."""
    try:
        check()
    except ConfigError as exc:
        exit_on(exc)


_ABSENT = object()


def _lookup(owner: str, name: str) -> Any:
    module_name, _, class_name = owner.partition(":")
    holder = importlib.import_module(module_name)
    if class_name:
        holder = getattr(holder, class_name)
        if inspect.isclass(holder) and name in _set_in_init(holder):
            found = getattr(holder, name, _ABSENT)  # a class default too, if there is one
            return None if found is _ABSENT else found
    return getattr(holder, name)


def _set_in_init(cls: type) -> set[str]:
    """The attributes the __init__ of `cls` or of a base sets on the instance."""
    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if inspect.isfunction(init):
            names |= {i.argval for i in dis.get_instructions(init) if i.opname == "STORE_ATTR"}
    return names


def _mentions(found: Any) -> set[str]:
    """A function's parameters and the names and strings in its code; a collection's members."""
    function = getattr(found, "__func__", found)
    function = getattr(function, "fget", function)  # a property's getter
    function = getattr(function, "func", function)  # a cached_property's
    code = getattr(function, "__code__", None)
    if code is not None:
        consts = {c for c in code.co_consts if isinstance(c, str)}
        for const in code.co_consts:  # ('reverse',): the keyword names of a call
            if isinstance(const, tuple):
                consts |= {c for c in const if isinstance(c, str)}
        return set(code.co_varnames) | set(code.co_names) | consts
    if isinstance(found, (tuple, list, set, frozenset, dict)):
        return {str(member) for member in found}
    return set()
