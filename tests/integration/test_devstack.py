"""The README's run command: the whole dev stack starts, carries a message, and stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_dev_stack_delivers_a_message_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "dev", "--smoke", "--home", str(tmp_path / "dev"),
         "--web-port", "0", "--wechat-port", "0", "--flower-port", "0"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    out = result.stdout
    for piece in (
        "API ",
        "fake WeChat ",
        "Flower ",
        "Redis ",
        "send --to",
        "reached the fake WeChat",
        "status API says delivered",
    ):
        assert piece in out, piece
    assert (tmp_path / "dev" / "webhook-secret").read_text().startswith("whsec_")
