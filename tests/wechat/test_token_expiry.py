"""Token lifetimes as time passes: stable tokens repeat, expire, and expiry is a TokenError."""

from __future__ import annotations

import time

from freezegun import freeze_time

from notifier.devtools.fake_wechat import FakeConfig, create_fake_app
from notifier.errors import TokenError, error_for

CREDENTIALS = {"grant_type": "client_credential", "appid": "wx_dev_app", "secret": "dev_secret"}
MESSAGE = {"touser": "oFollower0001", "template_id": "T", "data": {"k": {"value": "v"}}}


def test_a_token_expires_after_expires_in_and_the_answer_is_a_token_error() -> None:
    with freeze_time("2026-11-26 08:00:00") as frozen:
        client = create_fake_app(FakeConfig(), clock=lambda: time.time()).test_client()
        first = client.post("/cgi-bin/stable_token", json=CREDENTIALS).get_json()
        assert first["expires_in"] == 7200
        send = f"/cgi-bin/message/template/send?access_token={first['access_token']}"
        assert client.post(send, json=MESSAGE).get_json()["errcode"] == 0

        frozen.tick(3600)
        again = client.post("/cgi-bin/stable_token", json=CREDENTIALS).get_json()
        assert again["access_token"] == first["access_token"]
        assert again["expires_in"] == 3600

        frozen.tick(3601)
        answer = client.post(send, json=MESSAGE).get_json()
        assert answer["errcode"] == 42001
        assert isinstance(error_for(answer["errcode"], answer["errmsg"]), TokenError)
        fresh = client.post("/cgi-bin/stable_token", json=CREDENTIALS).get_json()
        assert fresh["access_token"] != first["access_token"]
