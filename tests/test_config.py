"""Settings: defaults, validation, and one clear line naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import Settings, client_endpoint, client_secret, load_settings
from notifier.errors import ConfigError
from notifier.signature import new_secret


def test_defaults_need_nothing() -> None:
    settings = load_settings({})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.wechat_api_base == "https://api.weixin.qq.com"
    assert settings.wechat_token_api == "stable"
    assert settings.send_rate_limit is None


def test_values_are_parsed() -> None:
    one, two = new_secret(), new_secret()
    settings = load_settings(
        {
            "REDIS_URL": "redis://r:6380/2",
            "WECHAT_API_BASE": "http://fake:8001/",
            "WECHAT_TOKEN_API": "classic",
            "WEBHOOK_SECRET": f" {one}  {two} ",
            "SEND_RATE_LIMIT": "200/s",
            "PORT": "9000",
        }
    )
    assert settings.wechat_api_base == "http://fake:8001"
    assert settings.webhook_secrets == (one, two)
    assert (settings.wechat_token_api, settings.send_rate_limit, settings.port) == (
        "classic",
        "200/s",
        9000,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WECHAT_TOKEN_API": "fast"}, "WECHAT_TOKEN_API"),
        ({"SEND_RATE_LIMIT": "lots"}, "SEND_RATE_LIMIT"),
        ({"SEND_RATE_LIMIT": "\u0665\u0660\u0660/s"}, "SEND_RATE_LIMIT"),  # Arabic-Indic digits
        ({"WECHAT_SEND_RATE": "\u0665\u0660\u0660/s"}, "WECHAT_SEND_RATE"),
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"WEBHOOK_SECRET": "hunter2hunter2hunter2"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRET": "whsec_!!!!notbase64!!!!"}, "WEBHOOK_SECRET"),
        (
            {"SEND_RETRY_BACKOFF_MAX": "60", "BROKER_VISIBILITY_TIMEOUT": "90"},
            "BROKER_VISIBILITY_TIMEOUT",
        ),
        ({"BROKER_VISIBILITY_TIMEOUT": "3600"}, "BROKER_VISIBILITY_TIMEOUT"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


@pytest.mark.parametrize(
    ("raw", "transport"), [(None, "fast"), ("", "fast"), ("fast", "fast"), (" Kombu ", "kombu")]
)
def test_the_broker_transport_is_notifiers_unless_kombus_is_asked_for(
    raw: str | None, transport: str
) -> None:
    env = {} if raw is None else {"BROKER_TRANSPORT": raw}
    assert load_settings(env).broker_transport == transport


def test_an_unknown_broker_transport_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"BROKER_TRANSPORT": "redis"})
    assert str(info.value) == "BROKER_TRANSPORT must be 'fast' or 'kombu', not 'redis'"


def test_a_malformed_secret_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"WEBHOOK_SECRET": "hunter2hunter2hunter2"})
    assert "hunter2" not in str(info.value)


def test_each_process_asks_only_for_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="WECHAT_APP_ID"):
        Settings().require_worker()
    with pytest.raises(ConfigError, match="WECHAT_APP_SECRET"):
        Settings(wechat_app_id="wx1").require_worker()
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        Settings().require_web()
    assert Settings(webhook_secrets=(new_secret(),)).require_web()


@pytest.mark.parametrize(
    ("env", "bundle"),
    [
        ({}, None),
        ({"CURL_CA_BUNDLE": "/etc/curl.pem"}, "/etc/curl.pem"),
        ({"REQUESTS_CA_BUNDLE": "/etc/ca.pem", "CURL_CA_BUNDLE": "/etc/curl.pem"}, "/etc/ca.pem"),
    ],
)
def test_a_ca_bundle_for_wechat_comes_from_the_usual_variables(
    env: dict[str, str], bundle: str | None
) -> None:
    assert load_settings(env).wechat_ca_bundle == bundle


PROXY = "http://egress.internal:3128"


@pytest.mark.parametrize(
    ("env", "proxies"),
    [
        ({}, ()),
        ({"HTTPS_PROXY": PROXY}, (("https", PROXY),)),
        ({"https_proxy": PROXY}, (("https", PROXY),)),
        ({"ALL_PROXY": PROXY}, (("https", PROXY),)),
        ({"HTTP_PROXY": PROXY}, ()),  # WeChat's API is https
        ({"HTTP_PROXY": PROXY, "WECHAT_API_BASE": "http://fake:9000"}, (("http", PROXY),)),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "weixin.qq.com"}, ()),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "example.com"}, (("https", PROXY),)),
    ],
)
def test_the_proxy_for_wechat_comes_from_the_usual_variables(
    env: dict[str, str], proxies: tuple[tuple[str, str], ...]
) -> None:
    assert load_settings(env).wechat_proxies == proxies


def test_notifier_send_posts_to_notifier_url_else_this_host_and_signs_with_the_first_secret() -> (
    None
):
    assert client_endpoint({"NOTIFIER_URL": "https://n.example"}) == "https://n.example"
    assert client_endpoint({"PORT": "9000"}) == "http://127.0.0.1:9000"
    assert client_secret({"WEBHOOK_SECRET": "whsec_new whsec_old"}) == "whsec_new"
    assert client_secret({}) is None


def test_loading_the_celery_config_imports_no_client_library() -> None:
    """A gevent worker can load it while patching, before ssl. A module that takes names from
    ssl by then keeps the blocking ones (urllib3), or makes gevent warn (redis.asyncio)."""
    code = "import sys, celeryconfig; print(sorted(m for m in ('urllib3', 'requests', 'redis') if m in sys.modules))"
    env = {**os.environ, "HTTPS_PROXY": "http://egress.internal:3128", "NO_PROXY": "example.com"}
    root = Path(__file__).parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_breaker_defaults_and_its_limits() -> None:
    settings = load_settings({})
    assert (settings.breaker_min_calls, settings.breaker_error_rate, settings.breaker_window,
            settings.breaker_sleep) == (20, 0.5, 10, 30)  # fmt: skip
    assert load_settings({"BREAKER_MIN_CALLS": "0"}).breaker_min_calls == 0  # switched off
    for env, named in [
        ({"BREAKER_ERROR_RATE": "50%"}, "BREAKER_ERROR_RATE"),
        ({"BREAKER_ERROR_RATE": "0"}, "BREAKER_ERROR_RATE"),
        ({"BREAKER_MIN_CALLS": "-1"}, "BREAKER_MIN_CALLS"),
        ({"BREAKER_WINDOW_SECONDS": "0"}, "BREAKER_WINDOW_SECONDS"),
        # A message waiting for the breaker is a countdown: well below the visibility timeout.
        ({"BREAKER_SLEEP_SECONDS": "60"}, "BREAKER_SLEEP_SECONDS"),
        ({"BREAKER_SLEEP_SECONDS": "40", "BROKER_VISIBILITY_TIMEOUT": "60"}, "BREAKER_SLEEP"),
    ]:
        with pytest.raises(ConfigError, match=named):
            load_settings(env)
