"""WeChat's pushed delivery receipts: signatures, safe-mode AES, and XML parsed without entities."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from notifier.errors import NotifierError

RECEIPT_EVENT = "TEMPLATESENDJOBFINISH"


class CallbackError(NotifierError):
    """Raised when a callback's signature, encryption or XML cannot be trusted."""


@dataclass(frozen=True)
class Receipt:
    """One TEMPLATESENDJOBFINISH event: WeChat's msgid and the outcome for the follower."""

    msgid: int
    delivered: bool  # else failed: the follower blocked us, or WeChat could not deliver
    reason: str  # WeChat's Status text, e.g. "success" or "failed:user block"


def parse_xml(body: bytes) -> dict[str, str]:
    """Parse a flat WeChat XML document into tag → text, refusing DTDs and entities.

    Raises:
        CallbackError: the body is not well-formed XML, or declares entities.
    """
    try:
        root: Element = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise CallbackError(f"callback body refused: {type(exc).__name__}") from None
    return {child.tag: (child.text or "") for child in root}


def receipt_from(fields: dict[str, str]) -> Receipt | None:
    """The receipt in a parsed event, or None for any other kind of push."""
    if fields.get("MsgType") != "event" or fields.get("Event") != RECEIPT_EVENT:
        return None
    try:
        msgid = int(fields.get("MsgID", ""))
    except ValueError:
        raise CallbackError("receipt has no numeric MsgID") from None
    outcome = fields.get("Status", "").strip()
    return Receipt(msgid, outcome == "success", outcome or "unknown")


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: sha1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


class CallbackVerifier:
    """Checks callback signatures and opens safe-mode envelopes for one account."""

    def __init__(self, token: str, app_id: str = "", encoding_aes_key: str = "") -> None:
        self._token = token
        self._app_id = app_id
        self._key = base64.b64decode(encoding_aes_key + "=") if encoding_aes_key else None

    def check(self, signature: str, timestamp: str, nonce: str, *extra: str) -> None:
        """Verify `signature` (or `msg_signature`, with the Encrypt text as `extra`).

        Raises:
            CallbackError: the signature does not match.
        """
        expected = sha1_signature(self._token, timestamp, nonce, *extra)
        if not signature or not hmac.compare_digest(expected, signature.lower()):
            raise CallbackError("callback signature does not match")

    def decrypt(self, encrypted: str) -> bytes:
        """Open a safe-mode Encrypt field and return the inner XML.

        Raises:
            CallbackError: no key is configured, or the ciphertext, padding or app id is wrong.
        """
        if self._key is None:
            raise CallbackError("safe-mode callback but WECHAT_ENCODING_AES_KEY is not set")
        try:
            raw = base64.b64decode(encrypted, validate=True)
            decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
            padded = decryptor.update(raw) + decryptor.finalize()
            pad = padded[-1]
            if not 1 <= pad <= 32:
                raise ValueError("bad padding")
            plain = padded[:-pad]
            (length,) = struct.unpack(">I", plain[16:20])
            message, app_id = plain[20 : 20 + length], plain[20 + length :].decode()
        except (ValueError, struct.error, UnicodeDecodeError, IndexError):
            raise CallbackError("callback ciphertext cannot be opened") from None
        if self._app_id and app_id != self._app_id:
            raise CallbackError("callback was encrypted for another app id")
        return message

    def encrypt(self, message: bytes, app_id: str) -> str:
        """Seal a message as WeChat does (used by tests and the fake side of a handshake)."""
        if self._key is None:
            raise CallbackError("no EncodingAESKey configured")
        plain = os.urandom(16) + struct.pack(">I", len(message)) + message + app_id.encode()
        pad = 32 - len(plain) % 32
        plain += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()
