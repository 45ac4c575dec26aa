"""The wake-up tokens: how one queued message wakes one idle worker, not every one of them.

Every push of a task onto a queue also pushes a token onto the queue's wake list, in the
same atomic step: the store's Lua push() (intake, replays, deferred releases, the
reconciler) or the transport's publish transaction (Celery's own publishes, retries). An
idle worker of one queue waits on its wake list (BLPOP), so a token wakes one worker;
waiting on the queue itself would wake all of them. The token only wakes: the woken worker
then pulls the message with the transport's pull script, which leaves a message in its
queue until it is recorded as unacknowledged, and clears the tokens of a queue it empties.

Tokens are hints, never the work: a message pushed without one (kombu's return of
unacknowledged messages, a publisher on kombu's stock transport) is found by the pull that
follows every wait that times out, and a token left over wakes a worker for nothing.
"""

from __future__ import annotations

# Tokens beyond this many wake nobody more usefully: each push trims the list to it.
WAKE_TOKENS_MAX = 256
# Each push renews the list's expiry, so the list of a queue that went away (Celery's reply
# queues expire) goes too.
WAKE_TOKENS_TTL = 60


def wake_key(queue: str) -> str:
    """The list of wake-up tokens for `queue`'s idle workers."""
    return f"{queue}:wake"
