"""Callback parsing and safe-mode opening: shallow XML only, and every padding byte checked."""

from __future__ import annotations

import base64
import os
import struct
import time

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from notifier.wechat.receipts import (
    MAX_XML_DEPTH,
    RECEIPT_EVENT,
    CallbackError,
    CallbackVerifier,
    Receipt,
    parse_xml,
    receipt_from,
)

AES_KEY = base64.b64encode(os.urandom(32)).decode().rstrip("=")
KEY = base64.b64decode(AES_KEY + "=")
APP = "wx_test_app"
RECEIPT = b"<xml><MsgType>event</MsgType><MsgID>7</MsgID></xml>"


def nested(levels: int) -> bytes:
    return b"<a>" * levels + b"x" + b"</a>" * levels


def seal(plain: bytes) -> str:
    """Encrypt an already padded plaintext as WeChat would, so tests can break the padding."""
    assert len(plain) % 32 == 0
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def framed(message: bytes, app_id: bytes = APP.encode(), length: int | None = None) -> bytes:
    """16 random bytes, the big-endian length, the message and the app id, unpadded."""
    stated = len(message) if length is None else length
    return os.urandom(16) + struct.pack(">I", stated) + message + app_id


def padded(plain: bytes) -> bytes:
    pad = 32 - len(plain) % 32
    return plain + bytes([pad]) * pad


def test_a_flat_receipt_parses() -> None:
    assert parse_xml(RECEIPT) == {"MsgType": "event", "MsgID": "7"}


def test_the_deepest_documented_push_parses() -> None:
    # MASSSENDJOBFINISH reaches the same URL and nests five levels; it must not be refused.
    body = (
        b"<xml><Event>MASSSENDJOBFINISH</Event><CopyrightCheckResult><ResultList><item>"
        b"<ArticleIdx>1</ArticleIdx></item></ResultList></CopyrightCheckResult></xml>"
    )
    assert parse_xml(body)["Event"] == "MASSSENDJOBFINISH"


def test_a_document_one_level_too_deep_is_refused() -> None:
    parse_xml(nested(MAX_XML_DEPTH))
    with pytest.raises(CallbackError, match="nested"):
        parse_xml(nested(MAX_XML_DEPTH + 1))


def test_a_hundred_thousand_levels_are_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(CallbackError, match="nested"):
        parse_xml(nested(100_000))
    # Refused within the first chunk: a full parse of this document takes about 70 ms.
    assert time.perf_counter() - started < 0.05


def test_a_sealed_message_opens() -> None:
    verifier = CallbackVerifier("t", APP, AES_KEY)
    for size in (0, 1, 11, 12, 43, 44, 100):  # 12 and 44 leave a full block of padding
        message = os.urandom(size)
        assert verifier.decrypt(verifier.encrypt(message, APP)) == message


def test_every_padding_byte_must_equal_the_pad() -> None:
    plain = framed(RECEIPT)
    pad = 32 - len(plain) % 32
    assert pad > 1  # the test needs a pad byte besides the last one to break
    broken = plain + bytes([pad ^ 0x40]) + bytes([pad]) * (pad - 1)
    with pytest.raises(CallbackError, match="cannot be opened"):
        CallbackVerifier("t", APP, AES_KEY).decrypt(seal(broken))


@pytest.mark.parametrize("last", [0, 33, 255])
def test_a_pad_value_outside_one_to_thirty_two_is_refused(last: int) -> None:
    plain = padded(framed(RECEIPT))
    with pytest.raises(CallbackError, match="cannot be opened"):
        CallbackVerifier("t", APP, AES_KEY).decrypt(seal(plain[:-1] + bytes([last])))


@pytest.mark.parametrize("app_id", [APP, ""], ids=["app-id-checked", "no-app-id"])
def test_a_length_past_the_plaintext_is_refused(app_id: str) -> None:
    plain = padded(framed(RECEIPT, length=len(RECEIPT) + len(APP) + 1))
    with pytest.raises(CallbackError, match="cannot be opened"):
        CallbackVerifier("t", app_id, AES_KEY).decrypt(seal(plain))


def test_a_plaintext_too_short_for_its_header_is_refused() -> None:
    plain = os.urandom(10)
    with pytest.raises(CallbackError, match="cannot be opened"):
        CallbackVerifier("t", "", AES_KEY).decrypt(seal(padded(plain)))


@pytest.mark.parametrize(
    "encrypted", ["", "AAAA", "not base64!", base64.b64encode(b"x" * 31).decode()]
)
def test_a_ciphertext_of_the_wrong_shape_is_refused(encrypted: str) -> None:
    with pytest.raises(CallbackError, match="cannot be opened"):
        CallbackVerifier("t", APP, AES_KEY).decrypt(encrypted)


@pytest.mark.parametrize("msgid", ["1_000", "\u0661\u0662", "+5", " 7 ", "-1", "9" * 21, ""])
def test_a_msgid_must_be_plain_ascii_digits(msgid: str) -> None:
    fields = {"MsgType": "event", "Event": RECEIPT_EVENT, "MsgID": msgid, "Status": "success"}
    with pytest.raises(CallbackError, match="MsgID"):
        receipt_from(fields)


def test_a_receipt_keeps_its_msgid_and_outcome() -> None:
    fields = {
        "MsgType": "event",
        "Event": RECEIPT_EVENT,
        "MsgID": "200163836",
        "Status": "failed:x",
    }
    assert receipt_from(fields) == Receipt(200163836, delivered=False, reason="failed:x")


@pytest.mark.parametrize(
    "signature", ["é" * 40, "\u00b2" * 40, ""], ids=["latin", "superscript", "empty"]
)
def test_a_signature_that_is_not_ascii_hex_is_a_mismatch(signature: str) -> None:
    with pytest.raises(CallbackError, match="signature"):
        CallbackVerifier("t").check(signature, "1", "n")
