"""A campaign recipient's id: the campaign's id and the recipient's index, readable both ways."""

from __future__ import annotations

import re

from notifier.broker.queues import MESSAGE_ID, is_message_id

# Every id recipient_id makes: a campaign id (minted as a message id is), a dash, and the
# index in ASCII digits without leading zeros. Bounded, so int() of it stays cheap.
RECIPIENT_ID = re.compile(rf"({MESSAGE_ID.pattern})-(0|[1-9][0-9]{{0,8}})")


def is_campaign_id(text: str) -> bool:
    """Whether `text` could name a campaign: campaign ids are minted as message ids are."""
    return is_message_id(text)


def recipient_id(campaign_id: str, index: int) -> str:
    """A recipient's message id; also its client_msg_id, so a resend is shown once."""
    return f"{campaign_id}-{index}"


def split_recipient_id(message_id: str) -> tuple[str, int] | None:
    """The (campaign id, index) of a recipient's id as minted; None for any other text."""
    match = RECIPIENT_ID.fullmatch(message_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2))
