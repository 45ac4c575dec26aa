"""WeChat's HTTP API as plain method calls that raise typed errors; no queue knows about it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from notifier.errors import (
    BAD_ANSWER_ERRCODE,
    HTTP_ERRCODE,
    NETWORK_ERRCODE,
    AccountError,
    TransientError,
    error_for,
)

SEND_PATH = "/cgi-bin/message/template/send"
HEADERS = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}


@dataclass(frozen=True)
class AccessToken:
    """A token as WeChat issued it, with its lifetime in seconds."""

    value: str
    expires_in: int


@dataclass(frozen=True)
class Credentials:
    """Where and as whom to call WeChat."""

    api_base: str
    app_id: str
    app_secret: str
    token_api: str = "stable"
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    ca_bundle: str | None = None
    # (scheme, proxy URL) pairs, as config read them from the environment.
    proxies: tuple[tuple[str, str], ...] = ()


class WeChatClient:
    """Calls WeChat through one thread-safe connection pool.

    Requests go straight to the pool's adapter, skipping the session layer: cookies,
    redirects, hooks and a fresh read of the proxy environment on every call cost more
    CPU than the send itself. Proxies come in the credentials, read once by config.
    """

    # Room for every thread or greenlet of a worker; connections are opened only as needed.
    def __init__(self, credentials: Credentials, pool_size: int = 256) -> None:
        self._cred = credentials
        self._adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._proxies = dict(credentials.proxies)

    @property
    def app_id(self) -> str:
        """The account this client acts for."""
        return self._cred.app_id

    def send_template(self, access_token: str, payload: dict[str, Any]) -> int:
        """Send one template message and return WeChat's msgid.

        Args:
            access_token: a current access token.
            payload: the JSON body: touser, template_id, data, and optionally
                url, miniprogram and client_msg_id.

        Raises:
            TransientError: busy, HTTP 5xx, timeout or network failure.
            TokenError: the token is invalid or expired.
            DailyQuotaError: the account's daily quota is spent.
            PermanentError: the message can never be sent as it is.
        """
        answer = self._call("POST", SEND_PATH, params={"access_token": access_token}, body=payload)
        return int(answer.get("msgid", 0))

    def fetch_token(self, force_refresh: bool = False) -> AccessToken:
        """Ask WeChat for an access token through the configured token API.

        Args:
            force_refresh: with the stable API, invalidate the current token and
                get a new one (WeChat allows this 20 times a day).

        Raises:
            WeChatError: the subclass matching WeChat's errcode, or TransientError.
        """
        cred = self._cred
        if cred.token_api == "classic":
            answer = self._call(
                "GET",
                "/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": cred.app_id,
                    "secret": cred.app_secret,
                },
            )
        else:
            answer = self._call(
                "POST",
                "/cgi-bin/stable_token",
                body={
                    "grant_type": "client_credential",
                    "appid": cred.app_id,
                    "secret": cred.app_secret,
                    "force_refresh": force_refresh,
                },
            )
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise TransientError(BAD_ANSWER_ERRCODE, "token answer has no access_token")
        return AccessToken(token, int(answer.get("expires_in", 7200)))

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None, body: Any
    ) -> requests.PreparedRequest:
        request = requests.PreparedRequest()
        request.method = method
        request.url = self._cred.api_base + path + (f"?{urlencode(params)}" if params else "")
        request.headers = CaseInsensitiveDict(HEADERS)
        # WeChat reads the body as UTF-8: names and order details stay readable, not escaped.
        if body is not None:
            request.body = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        request.prepare_content_length(request.body)
        return request

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        cred = self._cred
        try:
            response = self._adapter.send(
                self._request(method, path, params, body),
                timeout=(cred.connect_timeout, cred.read_timeout),
                proxies=self._proxies,
                verify=cred.ca_bundle or True,
            )
            # Read the whole body here, whatever the status: a read that times out or is
            # cut off is a network failure like any other, and a read body frees the
            # connection for the next call.
            content = response.content
        except requests.Timeout:
            # The URL carries the token or the secret: name only the path.
            raise TransientError(NETWORK_ERRCODE, f"timeout calling {path}") from None
        except requests.RequestException as exc:
            raise TransientError(NETWORK_ERRCODE, f"{type(exc).__name__} calling {path}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(HTTP_ERRCODE, f"HTTP {response.status_code} from {path}")
        if response.status_code != 200:
            # A 404 or 403 means WECHAT_API_BASE points somewhere that is not WeChat.
            raise AccountError(HTTP_ERRCODE, f"HTTP {response.status_code} from {path}")
        try:
            answer = json.loads(content)  # bytes: no charset guessing
        except ValueError:
            raise TransientError(BAD_ANSWER_ERRCODE, f"answer from {path} is not JSON") from None
        if not isinstance(answer, dict):
            raise TransientError(BAD_ANSWER_ERRCODE, f"answer from {path} is not an object")
        errcode = int(answer.get("errcode", 0) or 0)
        if errcode != 0:
            raise error_for(errcode, str(answer.get("errmsg", "")))
        return answer
