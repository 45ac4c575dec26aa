"""Every Redis key the application keeps, spelled here alone, so stores and tests agree on it.

Keys come in families, one function each: a record and the keys that live beside it.
A store that takes a prefix passes it (PREFIX by default); the unfinished sets and the
deferred chunks are the same under every prefix. The broker's keys (queues, their wake
lists, kombu's unacked set) are the broker's: see notifier/broker/wake.py.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "notifier"

# Each family's keys, by what they hold: the suffix after the family's own key.
_MESSAGE = {"record": "", "history": ":history", "claim": ":claim"}
_CAMPAIGN = {"record": "", "chunks": ":chunks", "outcomes": ":r", "failures": ":failed"}
_MSGID = {"message_id": "msgid", "early_receipt": "receipt"}
_DIGEST = {"idempotency": "idem", "callback_nonce": "callback-nonce"}
_ACCOUNT = {"quota": "quota:{}:paused", "rate": "rate:{}", "token": "token:{}",
            "token_lock": "token:{}:lock", "breaker": "breaker:{}",
            "breaker_trial": "breaker:{}:trial"}  # fmt: skip
AccountKind = Literal["quota", "rate", "token", "token_lock", "breaker", "breaker_trial"]
_DEFERRED = {"parked": "", "moving": ":moving"}
_SCHEDULE = {"due": "", "work": ":work"}
# The fleet's metrics: one hash of counters, one hash of bucket counts per histogram.
_METRICS = {"counters": "", "send_latency": ":send_latency", "wechat_request": ":wechat_request"}
MetricsKind = Literal["counters", "send_latency", "wechat_request"]


def message_key(
    prefix: str, message_id: str, part: Literal["record", "history", "claim"] = "record"
) -> str:
    """A single message's keys: its record (a hash of status, attempts, payload and last
    error), its history (JSON entries, oldest first) and its claim (held by the one worker
    sending it, for one attempt at most)."""
    return f"{prefix}:msg:{message_id}{_MESSAGE[part]}"


def campaign_key(
    prefix: str,
    campaign_id: str,
    part: Literal["record", "chunks", "outcomes", "failures"] = "record",
) -> str:
    """A campaign's keys: its record (a hash of state, template, size and counters, and the
    shared fields once a failure is listed), its chunks (number -> recipients and fields,
    until the chunk finishes), its outcomes (recipient index -> encoded outcome) and its
    failures (JSON entries, in order, each with its recipient's own data for a replay)."""
    return f"{prefix}:campaign:{campaign_id}{_CAMPAIGN[part]}"


def msgid_key(
    prefix: str, msgid: int | str, part: Literal["message_id", "early_receipt"] = "message_id"
) -> str:
    """Where a WeChat msgid points to its message id (a single message or a recipient), and
    where its receipt waits when it arrives before the send is recorded."""
    return f"{prefix}:{_MSGID[part]}:{msgid}"


def index_key(prefix: str, status: Literal["dead", "deferred"]) -> str:
    """The messages parked for an operator (failed and dead) or for the quota's reset
    (deferred): a sorted set, id -> when parked."""
    return f"{prefix}:{status}"


def digest_key(prefix: str, kind: Literal["idempotency", "callback_nonce"], digest: str) -> str:
    """Kept by a hash: a webhook-id's answer (its body's digest and the id it was given),
    or a callback's timestamp and nonce, while a replay of it would still be fresh."""
    return f"{prefix}:{_DIGEST[kind]}:{digest}"


def account_key(prefix: str, app_id: str, kind: AccountKind) -> str:
    """A WeChat account's keys, shared by every worker: its daily-quota pause, its send-rate
    token bucket, its access token, the lock of the one process refreshing it, its circuit
    breaker (a hash: open until when, or the rolling window's counts) and the key held by
    the one trial call of a breaker whose sleep is over."""
    return f"{prefix}:" + _ACCOUNT[kind].format(app_id)


def unfinished_key(queue: str) -> str:
    """The sorted set of `queue`'s unfinished work: member a task id, score when last seen."""
    return f"{PREFIX}:unfinished:{queue}"


def deferred_chunks_key(part: Literal["parked", "moving"] = "parked") -> str:
    """Campaign chunks held back by the daily quota (a list of their references), and
    where an older version's release kept one between moving and publishing it."""
    return f"{PREFIX}:deferred-chunks{_DEFERRED[part]}"


def schedule_key(prefix: str, part: Literal["due", "work"] = "due") -> str:
    """Work waiting for its send_at: a sorted set (message or campaign id -> due time) and a
    hash (the same id -> what the mover pushes then: its record's keys and task envelopes)."""
    return f"{prefix}:scheduled{_SCHEDULE[part]}"


def metrics_key(prefix: str, kind: MetricsKind) -> str:
    """The fleet's metrics, never expiring: the counters (a hash of field -> count, laid out
    in notifier/store/metrics.py), and each histogram's buckets (upper bound -> count, and
    `sum`), moved by the scripts that already run per message."""
    return f"{prefix}:metrics{_METRICS[kind]}"


def absent_key(prefix: str) -> str:
    """A key never written: stands in a script's KEYS for a record that cannot exist."""
    return f"{prefix}:none"
