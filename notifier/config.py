"""The one place that reads the environment, so every other module receives settings."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # untyped, public

from notifier.errors import ConfigError, SignatureError
from notifier.signature import secret_key

_TOKEN_APIS = ("stable", "classic")
# notifier's own Redis transport (notifier/broker/transport.py), or kombu's stock one.
_BROKER_TRANSPORTS = ("fast", "kombu")

# A rate as Celery writes one too: a number of sends per second, minute or hour.
RATE = re.compile(r"^(\d+(?:\.\d+)?)/([smh])$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float:
    """Turn '500/s', '3000/m' or '100000/h' into sends per second.

    Raises:
        ValueError: the text is not of that form, or the rate is not positive.
    """
    match = RATE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a rate like 500/s: {text!r}")
    return float(match.group(1)) / _PER[match.group(2)]


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
    send_rate_limit: str | None = None
    wechat_send_rate: float | None = None
    send_max_retries: int = 8
    send_retry_backoff_max: int = 30
    visibility_timeout: int = 90
    broker_transport: str = "fast"
    log_level: str = "INFO"
    api_tokens: tuple[str, ...] = ()
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
    rate = env.get("SEND_RATE_LIMIT", "").strip() or None
    if rate is not None and not RATE.match(rate):
        raise ConfigError(f"SEND_RATE_LIMIT must look like 200/s, 600/m or 10000/h, not {rate!r}")
    settings = Settings(
        redis_url=env.get("REDIS_URL", "").strip() or Settings.redis_url,
        wechat_app_id=env.get("WECHAT_APP_ID", "").strip(),
        wechat_app_secret=env.get("WECHAT_APP_SECRET", "").strip(),
        wechat_api_base=(env.get("WECHAT_API_BASE", "").strip() or Settings.wechat_api_base).rstrip(
            "/"
        ),
        wechat_token_api=token_api,
        wechat_connect_timeout=_number(env, "WECHAT_CONNECT_TIMEOUT", 3.05, 0.1, 60),
        wechat_read_timeout=_number(env, "WECHAT_READ_TIMEOUT", 10.0, 0.1, 60),
        wechat_ca_bundle=(
            env.get("REQUESTS_CA_BUNDLE", "").strip() or env.get("CURL_CA_BUNDLE", "").strip()
        )
        or None,
        wechat_proxies=_proxies(
            env, env.get("WECHAT_API_BASE", "").strip() or Settings.wechat_api_base
        ),
        webhook_secrets=_secrets(env.get("WEBHOOK_SECRET", "")),
        port=int(_number(env, "PORT", 8000, 1, 65535)),
        max_body_bytes=int(_number(env, "MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024)),
        max_batch_bytes=int(
            _number(env, "MAX_BATCH_BODY_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024)
        ),
        send_rate_limit=rate,
        wechat_send_rate=_fleet_rate(env.get("WECHAT_SEND_RATE", "")),
        send_max_retries=int(_number(env, "SEND_MAX_RETRIES", 8, 0, 100)),
        send_retry_backoff_max=int(_number(env, "SEND_RETRY_BACKOFF_MAX", 30, 1, 3600)),
        # Below WeChat's 10-minute client_msg_id window, so a redelivery is de-duplicated.
        visibility_timeout=int(_number(env, "BROKER_VISIBILITY_TIMEOUT", 90, 10, 540)),
        broker_transport=transport,
        log_level=(env.get("LOG_LEVEL", "").strip() or "INFO").upper(),
        api_tokens=_api_tokens(env.get("API_TOKENS", "")),
        status_retention=int(_number(env, "STATUS_RETENTION_DAYS", 7, 1, 365) * 86400),
        idempotency_ttl=int(_number(env, "IDEMPOTENCY_TTL_HOURS", 24, 24, 24 * 30) * 3600),
        wechat_callback_token=env.get("WECHAT_CALLBACK_TOKEN", "").strip(),
        wechat_encoding_aes_key=_aes_key(env.get("WECHAT_ENCODING_AES_KEY", "")),
    )
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    if settings.send_retry_backoff_max * 2 > settings.visibility_timeout:
        raise ConfigError(
            "BROKER_VISIBILITY_TIMEOUT must be at least twice SEND_RETRY_BACKOFF_MAX, "
            "or a waiting retry would be redelivered and run twice"
        )
    return settings


def _require(name: str, value: str) -> None:
    if not value:
        raise ConfigError(f"{name} is not set")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {raw}")
    return value


def _proxies(env: Mapping[str, str], api_base: str) -> tuple[tuple[str, str], ...]:
    """WeChat's egress proxy from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY, unless NO_PROXY skips it."""

    def get(name: str) -> str:
        return (env.get(name.lower(), "") or env.get(name.upper(), "")).strip()

    base = urlsplit(api_base)
    scheme = base.scheme or "https"
    proxy = get(f"{scheme}_proxy") or get("all_proxy")
    no_proxy = get("no_proxy")
    # The standard library's NO_PROXY rules, not requests': importing requests here would
    # load urllib3's ssl before a gevent worker patches it (see tests/test_config.py).
    host = base.hostname or ""
    if not proxy or (no_proxy and proxy_bypass_environment(host, {"no": no_proxy})):
        return ()
    return ((scheme, proxy),)


def _fleet_rate(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        return parse_rate(raw)
    except ValueError:
        raise ConfigError(
            f"WECHAT_SEND_RATE must look like 500/s or 20000/m, not {raw!r}"
        ) from None


def _api_tokens(raw: str) -> tuple[str, ...]:
    tokens = tuple(raw.split())
    if any(len(token) < 16 for token in tokens):
        raise ConfigError("API_TOKENS must hold tokens of at least 16 characters, space-separated")
    return tokens


def _aes_key(raw: str) -> str:
    key = raw.strip()
    if key and not re.fullmatch(r"[A-Za-z0-9+/]{43}", key):
        raise ConfigError("WECHAT_ENCODING_AES_KEY must be the 43 characters WeChat shows")
    return key


def _secrets(raw: str) -> tuple[str, ...]:
    secrets = tuple(raw.split())
    for secret in secrets:
        if not secret.startswith("whsec_") or len(secret) < 16 or not _decodes(secret):
            # Never echo the value: it is a secret even when malformed.
            raise ConfigError("WEBHOOK_SECRET must hold whsec_<base64> secrets, space-separated")
    return secrets


def _decodes(secret: str) -> bool:
    try:
        secret_key(secret)
    except SignatureError:
        return False
    return True


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


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """`${NAME:-default}` as a whole number: unset or empty means the default."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value
