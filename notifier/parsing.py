"""Settings' text turned into values, each refusal naming the setting a person must fix.

notifier/config.py reads the environment and hands each value here; nothing here reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # untyped, public

from notifier.errors import ConfigError, SignatureError
from notifier.signature import secret_key

# A rate as Celery writes one too: a number of sends per second, minute or hour. ASCII digits
# only (`\d` takes any script's), and \A...\Z, as `$` would also match before a final newline.
RATE = re.compile(r"\A([0-9]+(?:\.[0-9]+)?)/([smh])\Z")
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


def number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
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


def proxies(env: Mapping[str, str], api_base: str) -> tuple[tuple[str, str], ...]:
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


def fleet_rate(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        return parse_rate(raw)
    except ValueError:
        raise ConfigError(
            f"WECHAT_SEND_RATE must look like 500/s or 20000/m, not {raw!r}"
        ) from None


def api_tokens(raw: str) -> tuple[str, ...]:
    tokens = tuple(raw.split())
    if any(len(token) < 16 for token in tokens):
        raise ConfigError("API_TOKENS must hold tokens of at least 16 characters, space-separated")
    return tokens


def metrics_token(raw: str) -> str:
    token = raw.strip()
    if token and (len(token) < 16 or len(token.split()) > 1):
        raise ConfigError("METRICS_TOKEN must be one token of at least 16 characters")
    return token


def aes_key(raw: str) -> str:
    key = raw.strip()
    if key and not re.fullmatch(r"[A-Za-z0-9+/]{43}", key):
        raise ConfigError("WECHAT_ENCODING_AES_KEY must be the 43 characters WeChat shows")
    return key


def webhook_secrets(raw: str) -> tuple[str, ...]:
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
