"""The error hierarchy, which is also the retry policy: what to do is decided by type.

    NotifierError
    ├── ConfigError                  a setting is missing or malformed
    ├── SignatureError               a webhook signature is missing, forged or stale
    │   └── MalformedSignatureHeaders  a header is malformed or repeated: no key fits
    ├── BrokerUnavailable            the broker could not take a message
    └── WeChatError                  WeChat refused or failed a call
        ├── TransientError           retry with backoff (busy, 5xx, timeouts, network)
        │   └── MinuteQuotaError     45011: retry after about a minute
        ├── TokenError               the access token is stale: refresh once, resend once
        ├── DailyQuotaError          45009: pause sending until 00:00 Asia/Shanghai
        ├── PermanentError           this message can never be sent: one attempt only
        │   └── AccountError         the account is misconfigured: an operator must act
        └── RetriesExhausted         transient failures used up the retry budget: dead

The errcode table below is the only place that maps WeChat's codes to these classes.
"""

from __future__ import annotations


class NotifierError(Exception):
    """Raised for every failure this service knows how to name."""


class ConfigError(NotifierError):
    """Raised when a setting the process needs is missing or malformed."""


class SignatureError(NotifierError):
    """Raised when a webhook's signature headers are missing, forged or stale."""


class MalformedSignatureHeaders(SignatureError):
    """Raised when a signature header breaks its format, as a repeated one does: no key fits."""


class BrokerUnavailable(NotifierError):
    """Raised when the broker cannot durably accept a message."""


class WeChatError(NotifierError):
    """Raised when a WeChat API call fails; carries WeChat's errcode and errmsg."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg

    def __reduce__(self) -> tuple[type[WeChatError], tuple[int, str]]:
        return (type(self), (self.errcode, self.errmsg))


class TransientError(WeChatError):
    """Raised when a later attempt may succeed: system busy, HTTP 5xx, timeouts, network."""


class MinuteQuotaError(TransientError):
    """Raised when the per-minute quota is spent (45011); the next minute will do."""


class TokenError(WeChatError):
    """Raised when WeChat rejects the access token as invalid or expired."""


class DailyQuotaError(WeChatError):
    """Raised when the account's daily quota is spent (45009); it resets at 00:00 Shanghai."""


class PermanentError(WeChatError):
    """Raised when resending this message can never succeed (bad openid, unfollowed, ...)."""


class AccountError(PermanentError):
    """Raised when the account itself is misconfigured (template, IP whitelist, secret)."""


class RetriesExhausted(WeChatError):
    """Raised when a message's last allowed attempt failed too; it is recorded dead."""


# Synthetic codes for failures that never reached WeChat's answer body.
NETWORK_ERRCODE = -1001
HTTP_ERRCODE = -1002
BAD_ANSWER_ERRCODE = -1003
UNEXPECTED_ERRCODE = -1004

ERRCODE_CLASSES: dict[int, type[WeChatError]] = {
    -1: TransientError,
    45011: MinuteQuotaError,
    40001: TokenError,
    40014: TokenError,
    42001: TokenError,
    45009: DailyQuotaError,
    40003: PermanentError,
    43004: PermanentError,
    43019: PermanentError,
    43101: PermanentError,
    47003: PermanentError,
    47001: PermanentError,
    40039: PermanentError,
    40048: PermanentError,
    40036: AccountError,
    40037: AccountError,
    40164: AccountError,
    40125: AccountError,
    40013: AccountError,
    48001: AccountError,
    45027: AccountError,
}


def error_for(errcode: int, errmsg: str) -> WeChatError:
    """Build the error for a non-zero errcode; codes nobody has classified are permanent.

    An unknown code is not retried: retrying blindly could loop, and a failed
    message is visible to an operator, who can replay it.
    """
    return ERRCODE_CLASSES.get(errcode, PermanentError)(errcode, errmsg)
