"""The one place that reads the environment, so every other module receives settings."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from notifier import parsing
from notifier.errors import ConfigError

_TOKEN_APIS = ("stable", "classic")
# notifier's own Redis transport (notifier/broker/transport.py), or kombu's stock one.
_BROKER_TRANSPORTS = ("fast", "kombu")
# Plain lines for a person at a terminal, or one JSON object a line for a log pipeline.
_LOG_FORMATS = ("text", "json")
_KIB, _MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the processes need, parsed and checked once at start-up."""

    redis_url: str = "redis://localhost:6379/0"
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_token_api: str = "stable"
    wechat_connect_timeout: float = 3.05
    wechat_read_timeout: float = 10.0
    # A CA bundle for calls to WeChat (an egress proxy that inspects TLS); None: the default.
    wechat_ca_bundle: str | None = None
    # The egress proxy for calls to WeChat, by URL scheme; empty: connect directly.
    wechat_proxies: tuple[tuple[str, str], ...] = ()
    webhook_secrets: tuple[str, ...] = ()
    port: int = 8000
    max_body_bytes: int = 64 * 1024
    max_batch_bytes: int = 4 * 1024 * 1024
    # Seconds a request body has to arrive whole before the request is answered 408.
    body_timeout: float = 5.0
    send_rate_limit: str | None = None
    wechat_send_rate: float | None = None
    send_max_retries: int = 8
    send_retry_backoff_max: int = 30
    visibility_timeout: int = 90
    # The account's circuit breaker (notifier/store/breaker.py); 0 minimum calls: switched off.
    breaker_min_calls: int = 20
    breaker_error_rate: float = 0.5
    breaker_window: float = 10.0
    breaker_sleep: float = 30.0
    broker_transport: str = "fast"
    log_level: str = "INFO"
    log_format: str = "text"
    api_tokens: tuple[str, ...] = ()
    # The bearer token GET /metrics asks for; empty: the endpoint is open (a private network).
    metrics_token: str = ""
    status_retention: int = 7 * 24 * 3600
    idempotency_ttl: int = 24 * 3600
    wechat_callback_token: str = ""
    wechat_encoding_aes_key: str = ""

    def require_worker(self) -> Settings:
        """Fail fast when a worker could not reach WeChat."""
        _require("WECHAT_APP_ID", self.wechat_app_id)
        _require("WECHAT_APP_SECRET", self.wechat_app_secret)
        return self

    def require_web(self) -> Settings:
        """Fail fast when the receiver could not check signatures."""
        if not self.webhook_secrets:
            raise ConfigError(
                "WEBHOOK_SECRET is not set: give one or more whsec_<base64> secrets "
                "(make one with `notifier secret`)"
            )
        return self


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse settings from the environment, raising ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    token_api = env.get("WECHAT_TOKEN_API", "stable").strip().lower() or "stable"
    if token_api not in _TOKEN_APIS:
        raise ConfigError(f"WECHAT_TOKEN_API must be 'stable' or 'classic', not {token_api!r}")
    transport = env.get("BROKER_TRANSPORT", "").strip().lower() or "fast"
    if transport not in _BROKER_TRANSPORTS:
        raise ConfigError(f"BROKER_TRANSPORT must be 'fast' or 'kombu', not {transport!r}")
    log_format = env.get("LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in _LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be 'text' or 'json', not {log_format!r}")
    rate = env.get("SEND_RATE_LIMIT", "").strip() or None
    if rate is not None and not parsing.RATE.match(rate):
        raise ConfigError(f"SEND_RATE_LIMIT must look like 200/s, 600/m or 10000/h, not {rate!r}")
    settings = Settings(
        redis_url=env.get("REDIS_URL", "").strip() or Settings.redis_url,
        wechat_app_id=env.get("WECHAT_APP_ID", "").strip(),
        wechat_app_secret=env.get("WECHAT_APP_SECRET", "").strip(),
        wechat_api_base=(env.get("WECHAT_API_BASE", "").strip() or Settings.wechat_api_base).rstrip(
            "/"
        ),
        wechat_token_api=token_api,
        wechat_connect_timeout=parsing.number(env, "WECHAT_CONNECT_TIMEOUT", 3.05, 0.1, 60),
        wechat_read_timeout=parsing.number(env, "WECHAT_READ_TIMEOUT", 10.0, 0.1, 60),
        wechat_ca_bundle=(
            env.get("REQUESTS_CA_BUNDLE", "").strip() or env.get("CURL_CA_BUNDLE", "").strip()
        )
        or None,
        wechat_proxies=parsing.proxies(
            env, env.get("WECHAT_API_BASE", "").strip() or Settings.wechat_api_base
        ),
        webhook_secrets=parsing.webhook_secrets(env.get("WEBHOOK_SECRET", "")),
        port=int(parsing.number(env, "PORT", 8000, 1, 65535)),
        max_body_bytes=int(
            parsing.number(env, "MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024)
        ),
        max_batch_bytes=int(parsing.number(env, "MAX_BATCH_BODY_BYTES", 4 * _MIB, _KIB, 64 * _MIB)),
        body_timeout=parsing.number(env, "BODY_TIMEOUT_SECONDS", 5, 1, 300),
        send_rate_limit=rate,
        wechat_send_rate=parsing.fleet_rate(env.get("WECHAT_SEND_RATE", "")),
        send_max_retries=int(parsing.number(env, "SEND_MAX_RETRIES", 8, 0, 100)),
        send_retry_backoff_max=int(parsing.number(env, "SEND_RETRY_BACKOFF_MAX", 30, 1, 3600)),
        # Below WeChat's 10-minute client_msg_id window, so a redelivery is de-duplicated.
        visibility_timeout=int(parsing.number(env, "BROKER_VISIBILITY_TIMEOUT", 90, 10, 540)),
        breaker_min_calls=int(parsing.number(env, "BREAKER_MIN_CALLS", 20, 0, 1_000_000)),
        breaker_error_rate=parsing.number(env, "BREAKER_ERROR_RATE", 0.5, 0.01, 1),
        breaker_window=parsing.number(env, "BREAKER_WINDOW_SECONDS", 10, 1, 300),
        breaker_sleep=parsing.number(env, "BREAKER_SLEEP_SECONDS", 30, 1, 270),
        broker_transport=transport,
        log_level=(env.get("LOG_LEVEL", "").strip() or "INFO").upper(),
        log_format=log_format,
        api_tokens=parsing.api_tokens(env.get("API_TOKENS", "")),
        metrics_token=parsing.metrics_token(env.get("METRICS_TOKEN", "")),
        status_retention=int(parsing.number(env, "STATUS_RETENTION_DAYS", 7, 1, 365) * 86400),
        idempotency_ttl=int(parsing.number(env, "IDEMPOTENCY_TTL_HOURS", 24, 24, 24 * 30) * 3600),
        wechat_callback_token=env.get("WECHAT_CALLBACK_TOKEN", "").strip(),
        wechat_encoding_aes_key=parsing.aes_key(env.get("WECHAT_ENCODING_AES_KEY", "")),
    )
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    # Backoff and breaker waits are countdowns: kept well below the visibility timeout.
    longest_wait = max(settings.send_retry_backoff_max, settings.breaker_sleep)
    if longest_wait * 2 > settings.visibility_timeout:
        raise ConfigError(
            "BROKER_VISIBILITY_TIMEOUT must be at least twice SEND_RETRY_BACKOFF_MAX and "
            "BREAKER_SLEEP_SECONDS, or a waiting retry would be redelivered and run twice"
        )
    return settings


def _require(name: str, value: str) -> None:
    if not value:
        raise ConfigError(f"{name} is not set")


# Exit status for a configuration error; gunicorn's master halts on it instead of respawning.
EXIT_CONFIG = 4


def exit_on(error: ConfigError) -> NoReturn:
    """Stop the process with one line naming the bad setting."""
    print(f"notifier: {error}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def client_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """Where `notifier send` posts: $NOTIFIER_URL, else the receiver on this host's $PORT."""
    env = os.environ if environ is None else environ
    return env.get("NOTIFIER_URL", "").strip() or f"http://127.0.0.1:{env.get('PORT', 8000)}"


def client_secret(environ: Mapping[str, str] | None = None) -> str | None:
    """The secret `notifier send` signs with: the first in $WEBHOOK_SECRET, if any."""
    env = os.environ if environ is None else environ
    secrets = env.get("WEBHOOK_SECRET", "").split()
    return secrets[0] if secrets else None


@functools.cache
def current() -> Settings:
    """Load the settings once per process, or stop it with one line naming the bad variable."""
    try:
        return load_settings()
    except ConfigError as exc:
        exit_on(exc)
