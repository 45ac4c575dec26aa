"""GET /metrics: valid Prometheus text for the whole fleet, refusals counted, a token if set."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import redis
import responses
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from notifier.config import Settings, load_settings
from notifier.errors import ConfigError, PermanentError, TransientError
from notifier.store.messages import MessageState
from notifier.store.metrics import MetricsStore
from notifier.store.quota import QuotaGate
from notifier.store.tokens import TokenStore
from notifier.web.app import create_app
from notifier.web.metrics import Refusals
from notifier.wechat.client import Credentials, WeChatClient
from notifier.worker.sender import Sender
from tests.conftest import GOOD, signed

NAMES = {
    "notifier_messages_accepted", "notifier_requests_refused", "notifier_messages_sent",
    "notifier_messages_failed", "notifier_messages_dead", "notifier_send_retries",
    "notifier_send_latency_seconds", "notifier_wechat_request_seconds", "notifier_queue_depth",
    "notifier_oldest_queued_seconds", "notifier_token_refreshes", "notifier_circuit_open",
    "notifier_quota_paused",
}  # fmt: skip
BASE = "https://wechat.test"


def scrape(client: FlaskClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # fmt: skip
    """Every sample, by name and labels, as Prometheus's own parser reads the text."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(response.get_data(as_text=True)))
    assert {family.name for family in families} == NAMES
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def test_the_exposition_parses_and_names_every_metric(client: FlaskClient) -> None:
    samples = scrape(client)
    assert samples["notifier_messages_sent_total", ()] == 0
    assert samples["notifier_queue_depth", (("queue", "notifier.messages"),)] == 0
    assert samples["notifier_quota_paused", (("account", "wx_test_app"),)] == 0
    assert samples["notifier_circuit_open", (("account", "wx_test_app"),)] == 0
    assert samples["notifier_send_latency_seconds_count", ()] == 0


@responses.activate
def test_counters_histograms_and_queues_move_as_messages_are_accepted_and_sent(
    client: FlaskClient, settings: Settings, redis_client: redis.Redis
) -> None:
    before = scrape(client)
    ids = [client.post("/v1/messages", **signed(GOOD, msg_id=f"w{i}")).get_json()["id"]
           for i in range(3)]  # fmt: skip
    queued = scrape(client)
    assert queued["notifier_messages_accepted_total", (("kind", "single"),)] == 3
    assert queued["notifier_queue_depth", (("queue", "notifier.messages"),)] == 3
    assert queued["notifier_oldest_queued_seconds", (("queue", "notifier.messages"),)] >= 0
    responses.post(f"{BASE}/cgi-bin/stable_token", json={"access_token": "A", "expires_in": 7200})
    send = f"{BASE}/cgi-bin/message/template/send"
    responses.post(send, json={"errcode": 0, "errmsg": "ok", "msgid": 1})
    responses.post(send, json={"errcode": 43004, "errmsg": "require subscribe"})
    responses.post(send, json={"errcode": -1, "errmsg": "system busy"})
    wechat = WeChatClient(Credentials(BASE, "wx_test_app", "secret", "stable", 0.5, 0.5))
    state = MessageState(redis_client)
    sender = Sender(wechat, TokenStore(redis_client, wechat), state,
                    QuotaGate(redis_client, "wx_test_app"), claim_seconds=30)  # fmt: skip
    for message_id in ids:
        with contextlib.suppress(PermanentError, TransientError):  # measured, not raised
            sender.deliver({"id": message_id}, last_attempt=False)
    after = scrape(client)
    assert after["notifier_messages_sent_total", ()] == 1
    assert after["notifier_messages_failed_total", (("errcode", "43004"),)] == 1
    assert after["notifier_send_retries_total", ()] == 1
    assert after["notifier_token_refreshes_total", ()] == 1
    assert after["notifier_send_latency_seconds_count", ()] == 1
    assert after["notifier_send_latency_seconds_bucket", (("le", "+Inf"),)] == 1
    assert after["notifier_wechat_request_seconds_count", ()] == 3
    assert before["notifier_wechat_request_seconds_count", ()] == 0


def test_refused_intake_requests_are_counted_by_reason(client: FlaskClient) -> None:
    client.post("/v1/messages", data=b"{}", content_type="application/json")  # unsigned
    client.post("/v1/messages", **signed({"touser": "x"}, msg_id="w1"))  # invalid
    client.post("/v1/messages/batch", **signed({"recipients": []}, msg_id="w2"))
    client.get("/v1/messages/unknown")  # not intake: not counted
    samples = scrape(client)
    assert samples["notifier_requests_refused_total", (("reason", "signature"),)] == 1
    assert samples["notifier_requests_refused_total", (("reason", "invalid"),)] == 2
    assert samples["notifier_requests_refused_total", (("reason", "unavailable"),)] == 0


def test_a_refusal_redis_did_not_take_is_kept_until_it_does(redis_client: redis.Redis) -> None:
    class Flaky(MetricsStore):
        down = True

        def add(self, counts: dict[str, int]) -> None:  # type: ignore[override]
            if self.down:
                raise redis.ConnectionError("down")
            super().add(counts)

    store = Flaky(redis_client, ())
    refusals = Refusals(store)
    refusals.add("unavailable", flush=False)
    refusals.add("unavailable", flush=True)  # Redis still away: kept
    store.down = False
    refusals.flush()
    refusals.flush()  # nothing pending: nothing added twice
    assert store.read().counters == {"refused:unavailable": 2}


def test_with_a_metrics_token_only_its_bearer_may_scrape(
    settings: Settings, redis_client: redis.Redis
) -> None:
    token = "m" * 24
    client = create_app(dataclasses.replace(settings, metrics_token=token)).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(client, Authorization=f"Bearer {token}")


def test_a_metrics_token_must_be_one_long_token(settings: Settings) -> None:
    env = {"WEBHOOK_SECRET": settings.webhook_secrets[0], "REDIS_URL": settings.redis_url}
    assert load_settings({**env, "METRICS_TOKEN": " " + "t" * 16 + " "}).metrics_token == "t" * 16
    for bad in ("short", "a" * 16 + " " + "b" * 16):
        with pytest.raises(ConfigError, match="METRICS_TOKEN"):
            load_settings({**env, "METRICS_TOKEN": bad})
