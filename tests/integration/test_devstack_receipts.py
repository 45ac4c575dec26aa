"""The dev stack's fake pushes receipts: its status API shows `delivered`, and `failed` if blocked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from notifier.client import NotifierClient, template_message
from notifier.devtools.devstack import DevStack, Ports
from notifier.devtools.fake_wechat.receipts import SUCCESS, USER_BLOCK, receipt_status
from tests.integration.conftest import wait_for

SHARE = 0.5


def openid_with(status: str) -> str:
    """The first dev openid whose receipt has this status at the stack's blocked share."""
    return next(o for o in (f"oDevIt{i:06d}" for i in range(1000)) if
                receipt_status(o, SHARE) == status)  # fmt: skip


def test_the_dev_stack_shows_delivered_and_blocked_receipts(tmp_path: Path) -> None:
    lines: list[str] = []
    stack = DevStack(tmp_path / "dev", Ports(0, 0, 0), echo=lines.append, blocked_share=SHARE)
    web = f"http://127.0.0.1:{stack.ports.web}"
    headers = {"Authorization": f"Bearer {stack.api_token}"}

    def view(message_id: str) -> dict[str, Any]:
        answer = requests.get(f"{web}/v1/messages/{message_id}", headers=headers, timeout=5)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def final(message_id: str) -> dict[str, Any] | None:
        found = view(message_id)
        return found if found["status"] in ("delivered", "failed", "dead") else None

    try:
        stack.start()
        client = NotifierClient(web, stack.secret)
        ids = {}
        for status in (SUCCESS, USER_BLOCK):
            message = template_message(openid_with(status), "TPL_IT", {"thing1": "hello"})
            answer = client.post_message(message)
            assert answer.status_code == 202, answer.text
            ids[status] = answer.json()["id"]
        delivered = wait_for(lambda: final(ids[SUCCESS]), timeout=15, what="delivered")
        blocked = wait_for(lambda: final(ids[USER_BLOCK]), timeout=15, what="failed")
        pushes = requests.get(f"http://127.0.0.1:{stack.ports.wechat}/_fake/receipts", timeout=5)
    except BaseException:
        print("\n".join(lines[-200:]))
        raise
    finally:
        stack.stop()
    assert delivered["status"] == "delivered", delivered
    assert (blocked["status"], blocked["errmsg"]) == ("failed", "failed:user block"), blocked
    assert pushes.json()["pushed"] == 2 and pushes.json()["failed"] == 0, pushes.json()
