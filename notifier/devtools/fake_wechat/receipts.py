"""Signed receipts pushed after each send, so a dev stack reaches `delivered` and `failed`."""

import dataclasses
import hashlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from notifier.wechat.receipts import CallbackVerifier

from .config import FakeConfig

SUCCESS = "success"
USER_BLOCK = "failed:user block"
SYSTEM_FAILED = "failed: system failed"  # WeChat's spelling, with the space
RECEIPT_EVENT = "TEMPLATESENDJOBFINISH"
ACCOUNT = "gh_fake0account"  # ToUserName: the account's original id
POSTERS = 4  # threads posting receipts, so a slow callback does not hold the queue up
QUEUE_LIMIT = 100_000  # receipts waiting beyond this are dropped, not held in memory
POST_TIMEOUT = 5.0  # WeChat gives a server URL 5 s to answer
LOG_EVERY = 5.0  # seconds between warnings about failed pushes, so a dead URL does not flood
# What the control API may change while the fake runs, with the type each value must have.
RUNTIME_FIELDS: dict[str, tuple[type, ...]] = {
    "callback_url": (str,),
    "callback_token": (str,),
    "encoding_aes_key": (str,),
    "receipt_delay_ms": (int, float),
    "blocked_share": (int, float),
    "system_failed_share": (int, float),
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Push:
    """One receipt as WeChat posts it: the signed query string and the XML body."""

    params: dict[str, str]
    body: bytes


Post = Callable[[requests.Session, str, Push], None]


def _position(openid: str) -> float:
    """Where an openid falls in [0, 1): fixed per openid, so tests can predict its receipt."""
    return int.from_bytes(hashlib.sha256(openid.encode()).digest()[:8], "big") / 2**64


def receipt_status(openid: str, blocked_share: float, system_failed_share: float = 0.0) -> str:
    """The Status the fake reports for an openid under the given shares."""
    if not blocked_share and not system_failed_share:
        return SUCCESS
    at = _position(openid)
    if at < blocked_share:
        return USER_BLOCK
    if at < blocked_share + system_failed_share:
        return SYSTEM_FAILED
    return SUCCESS


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def receipt_xml(openid: str, msgid: int, status: str, created: int) -> bytes:
    """The TEMPLATESENDJOBFINISH event, spelled as WeChat spells it (strings in CDATA)."""
    return (
        f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName>"
        f"<FromUserName>{_cdata(openid)}</FromUserName><CreateTime>{created}</CreateTime>"
        f"<MsgType>{_cdata('event')}</MsgType><Event>{_cdata(RECEIPT_EVENT)}</Event>"
        f"<MsgID>{msgid}</MsgID><Status>{_cdata(status)}</Status></xml>"
    ).encode()


def _sha1(*parts: str) -> str:
    # Written out here, not imported, so the web's verifier checks an independent signer.
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def signed_push(config: FakeConfig, openid: str, xml: bytes, timestamp: int, nonce: str) -> Push:
    """Sign a receipt for the callback URL, sealing it first when an EncodingAESKey is set."""
    stamp = str(timestamp)
    params = {
        "signature": _sha1(config.callback_token, stamp, nonce),
        "timestamp": stamp,
        "nonce": nonce,
        "openid": openid,
    }
    if not config.encoding_aes_key:
        return Push(params, xml)
    verifier = CallbackVerifier(config.callback_token, config.app_id, config.encoding_aes_key)
    sealed = verifier.encrypt(xml, config.app_id)
    params["encrypt_type"] = "aes"
    params["msg_signature"] = _sha1(config.callback_token, stamp, nonce, sealed)
    body = (
        f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName><Encrypt>{_cdata(sealed)}</Encrypt></xml>"
    )
    return Push(params, body.encode())


def post_push(session: requests.Session, url: str, push: Push) -> None:
    """POST a receipt; anything but 200 with an empty or `success` body is an error."""
    response = session.post(
        url, params=push.params, data=push.body, headers={"Content-Type": "text/xml"},
        timeout=POST_TIMEOUT,
    )  # fmt: skip
    if response.status_code != 200 or response.text.strip() not in ("", "success"):
        raise RuntimeError(f"callback answered {response.status_code} {response.text[:100]!r}")


class ReceiptPusher:
    """Queues a receipt per send and posts it from background threads, after a short delay."""

    def __init__(self, config: FakeConfig, post: Post = post_push) -> None:
        self._config = config
        self._post = post
        self._queue: queue.Queue[tuple[float, str, int, str] | None] = queue.Queue(QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._counts = dict.fromkeys(("pushed", "failed", "dropped"), 0)
        self._last_warning = 0.0

    @property
    def config(self) -> FakeConfig:
        """The settings receipts are pushed with now (the control API may change them)."""
        return self._config

    def submit(self, openid: str, msgid: int) -> None:
        """Queue the receipt of an accepted send; cheap, so the send path does not wait."""
        config = self._config
        if not config.callback_url:
            return
        due = time.monotonic() + config.receipt_delay_ms / 1000
        status = receipt_status(openid, config.blocked_share, config.system_failed_share)
        try:
            self._queue.put_nowait((due, openid, msgid, status))
        except queue.Full:
            self._count("dropped")
            return
        if len(self._threads) < POSTERS:
            self._start()

    def configure(self, changes: Any) -> FakeConfig:
        """Apply the control API's changes to the receipt settings and return the new ones.

        Raises:
            ValueError: not an object of known fields with values of the right type and range.
        """
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        for name, value in changes.items():
            kinds = RUNTIME_FIELDS.get(name)
            if kinds is None:
                raise ValueError(f"unknown field {name!r}; known: {', '.join(RUNTIME_FIELDS)}")
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"{name} has the wrong type")
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            return self._config

    def stats(self) -> dict[str, Any]:
        """Counters of receipts pushed, refused or failed, dropped, and still waiting."""
        with self._lock:
            return {**self._counts, "pending": self._queue.qsize()}

    def describe(self) -> dict[str, Any]:
        """The settings in force (the token left out) and the counters."""
        config = self._config
        return {
            "callback_url": config.callback_url,
            "safe_mode": bool(config.encoding_aes_key),
            "receipt_delay_ms": config.receipt_delay_ms,
            "blocked_share": config.blocked_share,
            "system_failed_share": config.system_failed_share,
            **self.stats(),
        }

    def reset(self) -> None:
        """Zero the counters; receipts already queued are still pushed."""
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the posting threads once the receipts queued so far are pushed."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if len(self._threads) >= POSTERS:
                return
            thread = threading.Thread(target=self._run, name="fake-receipts", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _run(self) -> None:
        with requests.Session() as session:
            while (item := self._queue.get()) is not None:
                due, openid, msgid, status = item
                time.sleep(max(0.0, due - time.monotonic()))
                self._push(session, openid, msgid, status)

    def _push(self, session: requests.Session, openid: str, msgid: int, status: str) -> None:
        config = self._config
        if not config.callback_url:  # turned off while the receipt waited
            self._count("dropped")
            return
        now = int(time.time())
        try:
            push = signed_push(
                config, openid, receipt_xml(openid, msgid, status, now), now,
                str(secrets.randbelow(10**10)),
            )  # fmt: skip
            self._post(session, config.callback_url, push)
        except Exception as exc:  # a fake: a receipt that cannot be pushed is logged and dropped
            self._count("failed")
            self._warn(msgid, exc)
            return
        self._count("pushed")

    def _warn(self, msgid: int, exc: Exception) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_warning < LOG_EVERY:
                return
            self._last_warning = now
            failed = self._counts["failed"]
        log.warning("receipt for msgid %d not pushed (%d so far): %s", msgid, failed, exc)
