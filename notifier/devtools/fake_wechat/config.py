"""Settings of the fake WeChat server, so each test or benchmark can shape its behaviour."""

import base64
import binascii
import math
from dataclasses import dataclass

AES_KEY_LENGTH = 43  # an EncodingAESKey: 32 bytes in base64 without its final "="


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")


def _check_aes_key(key: str) -> None:
    if not key:
        return
    try:
        raw = base64.b64decode(key + "=", validate=True)
    except binascii.Error:
        raw = b""
    if len(key) != AES_KEY_LENGTH or len(raw) != 32:
        raise ValueError(f"encoding_aes_key must be {AES_KEY_LENGTH} base64 characters")


@dataclass(frozen=True)
class FakeConfig:
    """Credentials the fake accepts, the misbehaviour it adds, and where it pushes receipts."""

    app_id: str = "wx_dev_app"
    app_secret: str = "dev_secret"
    latency_ms: float = 0
    fail_rate: float = 0.0
    token_ttl: int = 7200
    dedupe_window: float = 600
    # Delivery receipts: off while callback_url is empty.
    callback_url: str = ""
    callback_token: str = ""
    encoding_aes_key: str = ""  # set: receipts are pushed in safe mode
    receipt_delay_ms: float = 200
    blocked_share: float = 0.0
    system_failed_share: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        _check_share("fail_rate", self.fail_rate)
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be > 0")
        if self.dedupe_window < 0:
            raise ValueError("dedupe_window must be >= 0")
        if self.callback_url and not self.callback_url.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http:// or https:// URL")
        if self.callback_url and not self.callback_token:
            raise ValueError("callback_url needs a callback_token to sign receipts with")
        _check_aes_key(self.encoding_aes_key)
        if not (math.isfinite(self.receipt_delay_ms) and self.receipt_delay_ms >= 0):
            raise ValueError("receipt_delay_ms must be a finite number >= 0")
        _check_share("blocked_share", self.blocked_share)
        _check_share("system_failed_share", self.system_failed_share)
        if self.blocked_share + self.system_failed_share > 1.0:
            raise ValueError("blocked_share + system_failed_share must be at most 1")
