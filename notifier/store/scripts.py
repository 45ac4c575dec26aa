"""The store's Lua scripts, read from notifier/store/lua/: each check-and-write is one atomic step.

Each .lua file opens with what its script does and what its KEYS and ARGV hold. A
script that queues work calls push(), defined once in push.lua and prepended here; one
that writes a sender's measurements calls tally(), from tally.lua, likewise.
"""

from __future__ import annotations

import functools
from importlib import resources

# The scripts that call push(): each must have push.lua before it, or Redis refuses it.
_PUSHING = frozenset({"admit_campaign", "admit_message", "move_due", "release_deferred",
                      "replay_campaign", "requeue", "revive"})  # fmt: skip
# The scripts that call tally() (tally.lua): the metrics a sender measured, written with
# the outcome they belong to.
_TALLYING = frozenset({"record_sent", "set_outcomes"})


@functools.cache
def source(name: str) -> str:
    """The text of lua/<name>.lua, after push.lua and tally.lua if it calls their functions."""
    text = _read(name)
    text = _read("tally") + text if name in _TALLYING else text
    return _read("push") + text if name in _PUSHING else text


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
