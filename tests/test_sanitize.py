"""sanitize_text / sanitize_field: untrusted text can only ever be text."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from agentbridge.sanitize import FIELD_MAX_LEN, sanitize_field, sanitize_text

#: Pieces that have broken bridges before (field notes) or that must survive as plain text.
NASTY = [
    "\x1b",
    "\x1b[201~",
    "\x1b[200~",
    "\x9b201~",
    "\x9b",
    "\x00",
    "\x07",
    "\x7f",
    "\x85",
    "\x80",
    "\x9f",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\ud800",
    "Enter",
    "C-c",
    "C-m",
    ";",
    "\\;",
    "$HOME",
    "#{pane_id}",
    "#",
    "😀",
    "👩‍💻",
    "שלום",
    "مرحبا",
    "\u202e",
    "e\u0301",
]
nasty_text = st.lists(st.sampled_from(NASTY) | st.text(max_size=8), max_size=12).map("".join)

BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def test_removes_escape_sequences_but_keeps_their_text() -> None:
    assert sanitize_text("a\x1b[201~\rrm -rf ~\r") == "a[201~\nrm -rf ~\n"
    assert sanitize_text("x\x9b201~y") == "x201~y"


def test_keeps_words_that_are_keys_or_tmux_syntax() -> None:
    text = "Enter C-c ; \\; $HOME #{pane_id} # 😀 שלום\tend\nnext"
    assert sanitize_text(text) == text


def test_line_endings_become_lf() -> None:
    assert sanitize_text("a\r\nb\rc\n") == "a\nb\nc\n"


def test_bytes_invalid_utf8_replaced() -> None:
    assert sanitize_text(b"ok\xff\x1b\xc2\x9bend") == "ok\ufffdend"


def test_nfc() -> None:
    assert sanitize_text("e\u0301") == "\u00e9"


def test_lone_surrogate_replaced() -> None:
    assert sanitize_text("a\ud800b") == "a\ufffdb"


def test_one_megabyte() -> None:
    text = ("x\x1b[201~y\r\n" * 100_000)[: 1 << 20]
    out = sanitize_text(text)
    assert not BAD.search(out)
    out.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(nasty_text)
def test_no_control_survives(text: str) -> None:
    out = sanitize_text(text)
    assert not BAD.search(out)
    assert "\x1b" not in out and "\r" not in out
    out.encode("utf-8")  # always encodable
    assert unicodedata.is_normalized("NFC", out)
    assert sanitize_text(out) == out  # idempotent


@settings(max_examples=300, deadline=None)
@given(nasty_text)
def test_plain_text_survives(text: str) -> None:
    """Everything that is not a control character is kept, in order."""
    out = sanitize_text(text)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    expected = re.sub("[\ud800-\udfff]", "\ufffd", expected)
    expected = unicodedata.normalize("NFC", BAD.sub("", expected))
    assert out == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_bytes_never_yield_controls(data: bytes) -> None:
    out = sanitize_text(data)
    assert not BAD.search(out)
    out.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(nasty_text)
def test_field_charset_and_length(value: str) -> None:
    out = sanitize_field(value)
    assert re.fullmatch(r"[A-Za-z0-9._@:+-]+", out)
    assert 1 <= len(out) <= FIELD_MAX_LEN


def test_field_examples() -> None:
    assert sanitize_field("alice@example.com") == "alice@example.com"
    assert sanitize_field("bob smith]") == "bob_smith_"
    assert sanitize_field("") == "_"
    assert sanitize_field(None) == "_"
    assert sanitize_field("x" * 500) == "x" * FIELD_MAX_LEN
    assert sanitize_field("a=b\nc") == "a_b_c"
