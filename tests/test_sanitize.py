"""sanitize_text / sanitize_field: untrusted text can only ever be text."""

from __future__ import annotations

import re
import sys
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from agentbridge.sanitize import (
    FIELD_MAX_LEN,
    clean_text,
    decode_utf8,
    sanitize_field,
    sanitize_text,
)

#: 🏴 + tag characters + cancel tag: the one place tag characters (Cf) are kept
ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
#: Cf characters allowed through: ZWNJ, ZWJ (and tags, but only inside a flag sequence)
ALLOWED_CF = {"\u200c", "\u200d"}

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
    "\u2066",
    "\u200b",
    "\ufeff",
    "\u200d",
    "\u200c",
    "\ufe0f",
    "\U000e0041",
    ENGLAND,
]
nasty_text = st.lists(st.sampled_from(NASTY) | st.text(max_size=8), max_size=12).map("".join)

BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
ALL_CF = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]


def stray_format(text: str) -> list[str]:
    """Cf characters in ``text`` that are neither allowed nor part of a flag tag sequence."""
    rest = text.replace(ENGLAND, "")
    for flag in re.findall("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f", rest):
        rest = rest.replace(flag, "")
    return [c for c in rest if unicodedata.category(c) == "Cf" and c not in ALLOWED_CF]


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
    """Everything that is not a control or stray format character is kept, in order."""
    out = sanitize_text(text)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    expected = re.sub("[\ud800-\udfff]", "\ufffd", expected)
    expected = BAD.sub("", expected)
    pieces = re.split("(\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f)", expected)
    expected = "".join(
        piece if i % 2 else "".join(c for c in piece if c not in set(stray_format(piece)))
        for i, piece in enumerate(pieces)
    )
    assert out == unicodedata.normalize("NFC", expected)


@settings(max_examples=300, deadline=None)
@given(nasty_text)
def test_no_stray_format_character_survives(text: str) -> None:
    assert stray_format(sanitize_text(text)) == []


def test_bidi_and_invisible_characters_are_removed() -> None:
    trojan = "if user == \u202e\u2066admin\u2069\u2066 {\u200b\u200e\u200f\u061c\ufeff}"
    assert sanitize_text(trojan) == "if user == admin {}"
    assert sanitize_text("a\u00adb\u2060c\U000e0041\U000e0001d") == "abcd"


def test_every_format_character_of_this_python_is_handled() -> None:
    """The hard-coded class covers every Cf code point ``unicodedata`` knows."""
    out = sanitize_text("x".join(ALL_CF))
    assert set(out) - {"x"} <= ALLOWED_CF
    assert len(ALL_CF) > 150


def test_emoji_sequences_stay_intact() -> None:
    for text in ["👩\u200d💻", "❤\ufe0f", ENGLAND, "می\u200cخواهم", "👍🏽", "1\ufe0f\u20e3"]:
        assert sanitize_text(text) == unicodedata.normalize("NFC", text)
    # a flag sequence is kept whole, a broken one loses its tags
    assert sanitize_text(ENGLAND[:-1] + "x") == "\U0001f3f4x"


def test_clean_text_only_fixes_what_cannot_be_stored() -> None:
    assert clean_text("a\ud800b\udcffc") == "a\ufffdb\ufffdc"
    assert clean_text("\ud83d\ude00") == "😀"  # a split surrogate pair is one character
    keep = "x\u202e\x1b[201~\u200b\r\n"
    assert clean_text(keep) is keep  # the ledger keeps what was sent


@settings(max_examples=300, deadline=None)
@given(nasty_text)
def test_clean_text_is_always_storable(text: str) -> None:
    out = clean_text(text)
    out.encode("utf-8")
    assert clean_text(out) == out
    assert len(out) <= len(text)


def test_decode_utf8_says_when_it_replaced() -> None:
    assert decode_utf8("ok é".encode()) == ("ok é", False)
    assert decode_utf8(b"a\xffb") == ("a\ufffdb", True)


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
