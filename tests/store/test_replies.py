"""Redis replies become text in one place, whatever type the client handed back."""

from notifier.store.replies import maybe_text, text


def test_bytes_are_decoded_and_numbers_formatted() -> None:
    assert text(b"\xe5\x8f\x91\xe9\x80\x81") == "发送"
    assert text("sent") == "sent"
    assert text(-1) == "-1"


def test_a_missing_value_stays_missing() -> None:
    assert maybe_text(None) is None
    assert maybe_text(b"") == ""
