"""WeChat's HTTP API as plain method calls that raise typed errors; no queue knows about it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from notifier.errors import (
    BAD_ANSWER_ERRCODE,
    HTTP_ERRCODE,
    NETWORK_ERRCODE,
    AccountError,
    TransientError,
    error_for,
)

SEND_PATH = "/cgi-bin/message/template/send"


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


class WeChatClient:
    """Calls WeChat over one pooled session per thread, since sessions are not thread-safe."""

    def __init__(self, credentials: Credentials, pool_size: int = 64) -> None:
        self._cred = credentials
        self._pool_size = pool_size
        self._local = threading.local()

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
        answer = self._call("POST", SEND_PATH, params={"access_token": access_token}, json=payload)
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
                json={
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

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._local.session = session
        return session

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        cred = self._cred
        try:
            response = self._session().request(
                method,
                cred.api_base + path,
                timeout=(cred.connect_timeout, cred.read_timeout),
                **kwargs,
            )
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
            answer = response.json()
        except ValueError:
            raise TransientError(BAD_ANSWER_ERRCODE, f"answer from {path} is not JSON") from None
        if not isinstance(answer, dict):
            raise TransientError(BAD_ANSWER_ERRCODE, f"answer from {path} is not an object")
        errcode = int(answer.get("errcode", 0) or 0)
        if errcode != 0:
            raise error_for(errcode, str(answer.get("errmsg", "")))
        return answer
