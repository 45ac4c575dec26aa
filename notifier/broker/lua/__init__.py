"""The broker transport's Lua scripts, read from the .lua files beside this module.

Each file opens with what its script does and what its KEYS and ARGV hold.
"""

import hashlib
from importlib import resources


def _read(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


PULL, ACK, PARK = _read("pull"), _read("ack"), _read("park")
# Sent by its digest once Redis has the script: the text, comments included, is 1.8 KB.
PULL_SHA = hashlib.sha1(PULL.encode(), usedforsecurity=False).hexdigest()
