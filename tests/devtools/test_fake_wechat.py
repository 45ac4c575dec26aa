"""Tests of the fake WeChat server, so clients are tested against faithful behaviour."""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from notifier.devtools.fake_wechat import FakeConfig, create_fake_app, server
from notifier.devtools.fake_wechat.__main__ import main
from tests.conftest import Clock

APP_ID = "wx_dev_app"
SECRET = "dev_secret"
OPENID = "oAbCdEf123456"
SEND = "/cgi-bin/message/template/send"
CREDENTIALS = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(clock: Clock, sleeps: list[float]) -> Callable[..., FlaskClient]:
    def make(**overrides: Any) -> FlaskClient:
        app = create_fake_app(FakeConfig(**overrides), clock=clock, sleep=sleeps.append)
        return app.test_client()

    return make


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def classic_token(client: FlaskClient) -> str:
    query = CREDENTIALS
    body = client.get("/cgi-bin/token", query_string=query).get_json()
    assert isinstance(body["access_token"], str)
    return body["access_token"]


def stable(client: FlaskClient, force: bool | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = dict(CREDENTIALS)
    if force is not None:
        payload["force_refresh"] = force
    body = client.post("/cgi-bin/stable_token", json=payload).get_json()
    assert isinstance(body, dict)
    return body


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": OPENID,
        "template_id": "tpl_order_shipped",
        "data": {"thing1": {"value": "Parcel"}, "time2": {"value": "2024-05-01"}},
    }
    body.update(overrides)
    return body


def send(client: FlaskClient, token: str, body: Any = None) -> dict[str, Any]:
    answer = client.post(SEND, query_string={"access_token": token}, json=body or message())
    result = answer.get_json()
    assert isinstance(result, dict)
    return result


def stats(client: FlaskClient) -> dict[str, Any]:
    result = client.get("/_fake/stats").get_json()
    assert isinstance(result, dict)
    return result


def delivered(client: FlaskClient) -> list[dict[str, Any]]:
    result = client.get("/_fake/messages").get_json()
    assert isinstance(result, dict)
    return list(result["messages"])


# Tokens


def test_classic_token_is_long_and_lasts_the_configured_ttl(
    make_client: Callable[..., FlaskClient],
) -> None:
    client = make_client(token_ttl=600)
    query = CREDENTIALS
    body = client.get("/cgi-bin/token", query_string=query).get_json()
    assert len(body["access_token"]) >= 64
    assert body["expires_in"] == 600


@pytest.mark.parametrize(
    ("query", "errcode"),
    [
        ({"appid": APP_ID, "secret": SECRET}, 40002),
        ({"grant_type": "password", "appid": APP_ID, "secret": SECRET}, 40002),
        ({"grant_type": "client_credential", "secret": SECRET}, 41002),
        ({"grant_type": "client_credential", "appid": "wx_other", "secret": SECRET}, 40013),
        ({"grant_type": "client_credential", "appid": APP_ID}, 41004),
        ({"grant_type": "client_credential", "appid": APP_ID, "secret": "nope"}, 40125),
    ],
)
def test_classic_token_refuses_bad_credentials(
    client: FlaskClient, query: dict[str, str], errcode: int
) -> None:
    body = client.get("/cgi-bin/token", query_string=query).get_json()
    assert body["errcode"] == errcode
    assert "access_token" not in body


def test_classic_token_overlaps_its_successor_for_five_minutes(
    client: FlaskClient, clock: Clock
) -> None:
    first = classic_token(client)
    clock.advance(10)
    second = classic_token(client)
    assert second != first
    clock.advance(299)
    assert send(client, first)["errcode"] == 0
    clock.advance(1)
    assert send(client, first)["errcode"] == 40001
    assert send(client, second)["errcode"] == 0


def test_classic_token_expires_after_its_ttl(client: FlaskClient, clock: Clock) -> None:
    token = classic_token(client)
    clock.advance(7199)
    assert send(client, token)["errcode"] == 0
    clock.advance(1)
    assert send(client, token) == {"errcode": 42001, "errmsg": "access_token expired"}


def test_stable_token_returns_the_same_token_until_its_last_five_minutes(
    client: FlaskClient, clock: Clock
) -> None:
    first = stable(client)
    assert first["expires_in"] == 7200
    clock.advance(1000)
    again = stable(client)
    assert again == {"access_token": first["access_token"], "expires_in": 6200}
    clock.advance(5950)
    renewed = stable(client)
    assert renewed == {"access_token": renewed["access_token"], "expires_in": 7200}
    assert renewed["access_token"] != first["access_token"]
    assert send(client, first["access_token"])["errcode"] == 0
    clock.advance(250)
    assert send(client, first["access_token"])["errcode"] == 42001
    assert send(client, renewed["access_token"])["errcode"] == 0


def test_stable_token_is_separate_from_classic_token(client: FlaskClient) -> None:
    classic = classic_token(client)
    token = stable(client)["access_token"]
    assert token != classic
    classic_token(client)
    assert stable(client)["access_token"] == token


def test_force_refresh_invalidates_the_stable_token_at_once(client: FlaskClient) -> None:
    old = stable(client)["access_token"]
    new = stable(client, force=True)["access_token"]
    assert new != old
    assert send(client, old)["errcode"] == 40001
    assert send(client, new)["errcode"] == 0
    assert stats(client)["force_refreshes"] == 1
    assert stats(client)["tokens_issued"] == 2


@pytest.mark.parametrize(
    ("payload", "errcode"),
    [
        ([], 47001),
        ({**CREDENTIALS, "force_refresh": 1}, 47001),
        ({**CREDENTIALS, "grant_type": "x"}, 40002),
        ({**CREDENTIALS, "appid": "wx_other"}, 40013),
        ({**CREDENTIALS, "secret": "nope"}, 40125),
    ],
)
def test_stable_token_refuses_bad_requests(client: FlaskClient, payload: Any, errcode: int) -> None:
    body = client.post("/cgi-bin/stable_token", json=payload).get_json()
    assert body["errcode"] == errcode


# Sending


def test_send_delivers_with_increasing_msgids(client: FlaskClient, clock: Clock) -> None:
    token = classic_token(client)
    first = send(client, token)
    assert first == {"errcode": 0, "errmsg": "ok", "msgid": 200000001}
    full = message(
        url="https://example.com/o/1",
        miniprogram={"appid": "wx_mini", "pagepath": "pages/order?id=1"},
        client_msg_id="order-1",
    )
    assert send(client, token, full)["msgid"] == 200000002
    listed = delivered(client)
    assert listed[0] == {
        "msgid": 200000001,
        "touser": OPENID,
        "template_id": "tpl_order_shipped",
        "data": message()["data"],
        "url": None,
        "miniprogram": None,
        "client_msg_id": None,
        "received_at": clock.now,
    }
    assert listed[1]["miniprogram"] == {"appid": "wx_mini", "pagepath": "pages/order?id=1"}
    assert listed[1]["url"] == "https://example.com/o/1"
    assert listed[1]["client_msg_id"] == "order-1"


def test_send_without_token_or_with_unknown_token(client: FlaskClient) -> None:
    assert client.post(SEND, json=message()).get_json()["errcode"] == 41001
    assert send(client, "made-up")["errcode"] == 40001
    assert delivered(client) == []


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ("not json", 47001),
        ([message()], 47001),
        (message(extra=1), 47001),
        ({k: v for k, v in message().items() if k != "touser"}, 40003),
        (message(touser="short"), 40003),
        (message(touser="bad openid!"), 40003),
        (message(touser="o" * 65), 40003),
        (message(touser=123456789), 40003),
        (message(touser="unfollowed_user_1"), 43004),
        (message(touser="blocked_user_1"), 43019),
        ({k: v for k, v in message().items() if k != "template_id"}, 40037),
        (message(template_id=""), 40037),
        (message(template_id="bad_template"), 40037),
        ({k: v for k, v in message().items() if k != "data"}, 47003),
        (message(data=["x"]), 47003),
        (message(data={"thing1": "Parcel"}), 47003),
        (message(data={"thing1": {"val": "Parcel"}}), 47003),
        (message(data={"thing1": {"value": 5}}), 47003),
        (message(url=None), 47003),
        (message(miniprogram="wx_mini"), 47003),
        (message(miniprogram={"pagepath": "pages/a"}), 47003),
        (message(miniprogram={"appid": "wx_mini", "pagepath": 1}), 47003),
        (message(miniprogram={"appid": "wx_mini", "path": "a"}), 47003),
        (message(client_msg_id=42), 47003),
    ],
)
def test_send_refuses_bad_bodies(client: FlaskClient, body: Any, errcode: int) -> None:
    token = classic_token(client)
    if isinstance(body, str):
        answer = client.post(SEND, query_string={"access_token": token}, data=body)
        result = answer.get_json()
    else:
        result = send(client, token, body)
    assert result["errcode"] == errcode
    assert "msgid" not in result
    assert delivered(client) == []
    assert stats(client)["errors_by_code"] == {str(errcode): 1}


def test_bad_data_key_is_named(client: FlaskClient) -> None:
    body = message(data={"thing1": {"value": "ok"}, "amount3": {}})
    assert send(client, classic_token(client), body)["errmsg"] == "argument invalid! data.amount3"


def test_dedupe_answers_the_first_msgid_and_delivers_once(
    client: FlaskClient, clock: Clock
) -> None:
    token = classic_token(client)
    first = send(client, token, message(client_msg_id="k1"))
    clock.advance(599)
    assert send(client, token, message(client_msg_id="k1")) == first
    other_user = send(client, token, message(client_msg_id="k1", touser="oOtherUser1"))
    assert other_user["msgid"] != first["msgid"]
    assert len(delivered(client)) == 2
    assert stats(client)["duplicates_suppressed"] == 1
    clock.advance(1)
    assert send(client, token, message(client_msg_id="k1"))["msgid"] != first["msgid"]
    assert len(delivered(client)) == 3


def test_messages_without_client_msg_id_are_never_deduplicated(client: FlaskClient) -> None:
    token = classic_token(client)
    assert send(client, token)["msgid"] != send(client, token)["msgid"]
    assert len(delivered(client)) == 2


# Faults


def test_faults_apply_in_order_and_times(client: FlaskClient) -> None:
    specs = [{"errcode": -1, "times": 2}, {"http_status": 500}, {"errcode": 45009}]
    assert client.post("/_fake/faults", json=specs).get_json() == {"queued": 4}
    assert client.post("/_fake/faults", json={"errcode": 45011}).get_json() == {"queued": 5}
    token = classic_token(client)
    url = f"{SEND}?access_token={token}"
    assert client.post(url, json=message()).get_json()["errcode"] == -1
    assert client.post(url, json=message()).get_json()["errcode"] == -1
    answer = client.post(url, json=message())
    assert answer.status_code == 500
    assert answer.mimetype == "text/plain"
    assert client.post(url, json=message()).get_json()["errcode"] == 45009
    assert client.post(url, json=message()).get_json()["errcode"] == 45011
    assert client.post(url, json=message()).get_json()["errcode"] == 0
    counters = stats(client)
    assert counters["errors_by_code"] == {"-1": 2, "45009": 1, "45011": 1}
    assert counters["http_faults"] == 1
    assert counters["send_calls"] == 6
    assert counters["delivered"] == 1
    assert counters["pending_faults"] == 0


def test_an_outage_fails_every_send_for_its_seconds_then_the_queue_goes_on(
    client: FlaskClient, clock: Clock
) -> None:
    outage = [{"errcode": -1, "for_seconds": 150}, {"http_status": 503}]
    assert client.post("/_fake/faults", json=outage).get_json() == {"queued": 1}
    token = classic_token(client)
    url = f"{SEND}?access_token={token}"
    for _ in range(3):
        assert client.post(url, json=message()).get_json()["errcode"] == -1
        clock.advance(49)
    clock.advance(4)  # 151 s after it was queued: over
    assert client.post(url, json=message()).status_code == 503
    assert client.post(url, json=message()).get_json()["errcode"] == 0
    counters = stats(client)
    assert counters["errors_by_code"] == {"-1": 3}
    assert (counters["delivered"], counters["pending_faults"]) == (1, 0)


def test_delay_fault_still_delivers(client: FlaskClient, sleeps: list[float]) -> None:
    client.post("/_fake/faults", json={"delay_ms": 3000})
    assert send(client, classic_token(client))["errcode"] == 0
    assert sleeps == [3.0]
    assert len(delivered(client)) == 1


def test_dropped_fault_answers_504_without_delivery(
    client: FlaskClient, sleeps: list[float]
) -> None:
    client.post("/_fake/faults", json={"delay_ms": 3000, "drop": True})
    answer = client.post(SEND, query_string={"access_token": classic_token(client)}, json=message())
    assert answer.status_code == 504
    assert sleeps == [3.0]
    assert delivered(client) == []


@pytest.mark.parametrize(
    "spec",
    [
        "x",
        {},
        {"errcode": 0},
        {"errcode": -1, "http_status": 500},
        {"http_status": 200},
        {"delay_ms": -1},
        {"errcode": -1, "times": 0},
        {"errcode": -1, "colour": "red"},
        {"errcode": -1, "for_seconds": 0},
        {"errcode": -1, "for_seconds": "150"},
        {"errcode": -1, "for_seconds": 5, "times": 2},
        [{"errcode": -1}, {"drop": "yes"}],
    ],
)
def test_bad_fault_specs_are_refused_whole(client: FlaskClient, spec: Any) -> None:
    answer = client.post("/_fake/faults", json=spec)
    assert answer.status_code == 400
    assert stats(client)["pending_faults"] == 0


def test_latency_and_fail_rate_apply_to_send_calls(
    make_client: Callable[..., FlaskClient], sleeps: list[float]
) -> None:
    client = make_client(latency_ms=250, fail_rate=1.0)
    assert send(client, classic_token(client)) == {"errcode": -1, "errmsg": "system error"}
    assert sleeps == [0.25]


def test_invalidate_token_breaks_all_live_tokens(client: FlaskClient) -> None:
    classic = classic_token(client)
    stable_token = stable(client)["access_token"]
    assert client.post("/_fake/invalidate-token").get_json() == {"invalidated": 2}
    assert send(client, classic)["errcode"] == 40001
    assert send(client, stable_token)["errcode"] == 40001
    renewed = stable(client)["access_token"]
    assert renewed != stable_token
    assert send(client, renewed)["errcode"] == 0


def test_expire_tokens_makes_them_expired(client: FlaskClient) -> None:
    classic = classic_token(client)
    stable_token = stable(client)["access_token"]
    assert client.post("/_fake/expire-tokens").get_json() == {"expired": 2}
    assert send(client, classic)["errcode"] == 42001
    assert send(client, stable_token)["errcode"] == 42001


def test_reset_clears_everything(client: FlaskClient) -> None:
    token = classic_token(client)
    send(client, token, message(client_msg_id="k1"))
    client.post("/_fake/faults", json={"errcode": -1})
    client.post("/_fake/reset")
    assert delivered(client) == []
    counters = stats(client)
    assert counters["send_calls"] == 0
    assert counters["pending_faults"] == 0
    assert send(client, token)["errcode"] == 40001
    fresh = classic_token(client)
    assert send(client, fresh, message(client_msg_id="k1"))["errcode"] == 0
    assert len(delivered(client)) == 1


# Inspection


def test_messages_page_with_since(client: FlaskClient) -> None:
    token = classic_token(client)
    for n in range(3):
        send(client, token, message(client_msg_id=f"m{n}"))
    page = client.get("/_fake/messages?since=1").get_json()
    assert page["count"] == 2
    assert [m["client_msg_id"] for m in page["messages"]] == ["m1", "m2"]
    assert client.get("/_fake/messages?since=-1").status_code == 400


def test_stats_count_every_kind_of_call(client: FlaskClient) -> None:
    classic_token(client)
    token = classic_token(client)
    stable(client)
    stable(client)
    stable(client, force=True)
    send(client, token)
    send(client, "made-up")
    assert stats(client) == {
        "send_calls": 2,
        "delivered": 1,
        "duplicates_suppressed": 0,
        "errors_by_code": {"40001": 1},
        "http_faults": 0,
        "token_calls": 2,
        "stable_token_calls": 3,
        "force_refreshes": 1,
        "tokens_issued": 4,
        "pending_faults": 0,
    }


def test_index_page_escapes_message_content(client: FlaskClient) -> None:
    token = classic_token(client)
    send(client, token, message(data={"thing1": {"value": "<script>alert(1)</script>"}}))
    page = client.get("/").get_data(as_text=True)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "200000001" in page


def test_healthz(client: FlaskClient) -> None:
    answer = client.get("/healthz")
    assert answer.get_data(as_text=True) == "ok"


# Running for real


def test_serve_answers_real_http(monkeypatch: pytest.MonkeyPatch) -> None:
    servers: list[server.FakeServer] = []
    real_make = server.make_fake_server

    def capture(*args: Any, **kwargs: Any) -> server.FakeServer:
        servers.append(real_make(*args, **kwargs))
        return servers[-1]

    monkeypatch.setattr(server, "make_fake_server", capture)
    thread = threading.Thread(target=server.serve, args=(FakeConfig(), "127.0.0.1", 0))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not servers and time.monotonic() < deadline:
            time.sleep(0.01)
        base = f"http://127.0.0.1:{servers[0].server_port}"
        with requests.Session() as session:
            query = CREDENTIALS
            token = session.get(f"{base}/cgi-bin/token", params=query, timeout=5).json()
            answer = session.post(
                f"{base}{SEND}",
                params={"access_token": token["access_token"]},
                json=message(),
                timeout=5,
            )
            assert answer.json() == {"errcode": 0, "errmsg": "ok", "msgid": 200000001}
            assert answer.raw.version == 11
    finally:
        if servers:
            servers[0].shutdown()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_main_builds_config_from_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[FakeConfig, str, int]] = []

    def fake_serve(config: FakeConfig, host: str, port: int, *, verbose: bool) -> None:
        calls.append((config, host, port))

    monkeypatch.setattr("notifier.devtools.fake_wechat.__main__.serve", fake_serve)
    main(["--port", "9100", "--latency-ms", "5", "--fail-rate", "0.1", "--app-id", "wx_x"])
    expected = FakeConfig(app_id="wx_x", latency_ms=5, fail_rate=0.1)
    assert calls == [(expected, "127.0.0.1", 9100)]
