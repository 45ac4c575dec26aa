"""WeChat's pushed receipts: signatures, safe-mode AES, and flat XML parsed without entities."""

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
from defusedxml.ElementTree import ParseError, iterparse

from notifier.errors import NotifierError

RECEIPT_EVENT = "TEMPLATESENDJOBFINISH"
# Root = 1. A receipt or safe-mode envelope needs 2; the deepest push WeChat documents for
# the same URL (MASSSENDJOBFINISH's CopyrightCheckResult/ResultList/item/field) needs 5.
MAX_XML_DEPTH = 6
# The parser is fed this much at a time and its events are read after each feed, so a
# document nested too deep is refused within its first chunk, not after a full parse.
_FEED_BYTES = 1024
# WeChat pads safe-mode plaintext to 32-byte blocks (PKCS#7 with k = 32): pads run 1..32.
_BLOCK = 32
_HEADER = 20  # 16 random bytes, then the message's length as a big-endian uint32
_MSGID_DIGITS = 20  # WeChat's msgid is a uint64


class CallbackError(NotifierError):
    """Raised when a callback's signature, encryption or XML cannot be trusted."""


class CallbackUnproven(CallbackError):
    """Raised when a callback is not proven to be WeChat's: signature, time, mode or app id."""


@dataclass(frozen=True)
class Receipt:
    """One TEMPLATESENDJOBFINISH event: WeChat's msgid and the outcome for the follower."""

    msgid: int
    delivered: bool  # else failed: the follower blocked us, or WeChat could not deliver
    reason: str  # WeChat's Status text, e.g. "success" or "failed:user block"


class _Chunks:
    """A body read in small pieces, so the depth check runs before much of it is parsed."""

    def __init__(self, body: bytes) -> None:
        self._view = memoryview(body)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        """The next piece, whatever `size` asks: the parser reads until an empty one."""
        piece = self._view[self._at : self._at + _FEED_BYTES]
        self._at += len(piece)
        return bytes(piece)


def parse_xml(body: bytes) -> dict[str, str]:
    """Parse a flat WeChat XML document into tag → text, refusing DTDs, entities and depth.

    Raises:
        CallbackError: the body is not well-formed XML, declares entities, or nests deeper
            than MAX_XML_DEPTH.
    """
    root: Element | None = None  # the first element opened
    depth = 0  # elements open at this event; never above MAX_XML_DEPTH past the check
    try:
        for event, element in iterparse(_Chunks(body), ("start", "end"), forbid_dtd=True):
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if depth > MAX_XML_DEPTH:
                raise CallbackError(f"callback XML is nested deeper than {MAX_XML_DEPTH} levels")
            if root is None:
                root = element
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise CallbackError(f"callback body refused: {type(exc).__name__}") from None
    if root is None:  # not reached: the parser refuses a document without an element
        raise CallbackError("callback body has no element")
    return {child.tag: (child.text or "") for child in root}


def receipt_from(fields: dict[str, str]) -> Receipt | None:
    """The receipt in a parsed event, or None for any other kind of push."""
    if fields.get("MsgType") != "event" or fields.get("Event") != RECEIPT_EVENT:
        return None
    raw = fields.get("MsgID", "")
    # ASCII digits only: int() would also take "1_000", " 7", "+5" and other scripts' digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MSGID_DIGITS):
        raise CallbackError("receipt has no numeric MsgID")
    msgid = int(raw)
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

    @property
    def encrypted_only(self) -> bool:
        """With a key set, a plain push is refused: its signature does not cover its body."""
        return self._key is not None

    def check(self, signature: str, timestamp: str, nonce: str, *extra: str) -> None:
        """Verify `signature` (or `msg_signature`, with the Encrypt text as `extra`).

        Raises:
            CallbackUnproven: the signature does not match.
        """
        expected = sha1_signature(self._token, timestamp, nonce, *extra)
        # compare_digest refuses non-ASCII text with TypeError: such a signature is a mismatch.
        if not signature.isascii() or not hmac.compare_digest(expected, signature.lower()):
            raise CallbackUnproven("callback signature does not match")

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
            plain = _unpad(decryptor.update(raw) + decryptor.finalize())
            # Invariant past here: 20 <= 20 + length <= len(plain), the app id the rest.
            (length,) = struct.unpack(">I", plain[16:_HEADER])
            if _HEADER + length > len(plain):
                raise ValueError("the stated length runs past the plaintext")
            message = plain[_HEADER : _HEADER + length]
            app_id = plain[_HEADER + length :].decode()
        except (ValueError, struct.error, UnicodeDecodeError):
            raise CallbackError("callback ciphertext cannot be opened") from None
        if self._app_id and app_id != self._app_id:
            raise CallbackUnproven("callback was encrypted for another app id")
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


def _unpad(padded: bytes) -> bytes:
    """Strip WeChat's PKCS#7 padding, checking every pad byte, not only the last.

    Raises:
        ValueError: the text is not whole blocks, or its padding is not 1..32 copies of its
            length. The pad bytes are compared in constant time for a given pad length.
    """
    if not padded or len(padded) % _BLOCK:
        raise ValueError("the plaintext is not whole 32-byte blocks")
    pad = padded[-1]
    if not 1 <= pad <= _BLOCK or not hmac.compare_digest(padded[-pad:], bytes([pad]) * pad):
        raise ValueError("bad padding")
    plain = padded[:-pad]
    if len(plain) < _HEADER:
        raise ValueError("the plaintext is shorter than its header")
    return plain
