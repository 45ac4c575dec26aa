"""The store's Lua scripts, read from notifier/store/lua/: each check-and-write is one atomic step.

Each .lua file opens with what its script does and what its KEYS and ARGV hold. A
script that queues work calls push(), defined once in push.lua and prepended here.
"""

from __future__ import annotations

import functools
from importlib import resources

# The scripts that call push(): each must have push.lua before it, or Redis refuses it.
_PUSHING = frozenset({"admit_campaign", "admit_message", "release_deferred", "requeue", "revive"})


@functools.cache
def source(name: str) -> str:
    """The text of lua/<name>.lua, with push.lua before it if the script calls push()."""
    text = _read(name)
    return _read("push") + text if name in _PUSHING else text


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
