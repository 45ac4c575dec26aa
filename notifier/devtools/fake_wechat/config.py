"""Settings of the fake WeChat server, so each test or benchmark can shape its behaviour."""

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeConfig:
    """Credentials the fake accepts and the misbehaviour it adds to every send call."""

    app_id: str = "wx_dev_app"
    app_secret: str = "dev_secret"
    latency_ms: float = 0
    fail_rate: float = 0.0
    token_ttl: int = 7200
    dedupe_window: float = 600

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be > 0")
        if self.dedupe_window < 0:
            raise ValueError("dedupe_window must be >= 0")
