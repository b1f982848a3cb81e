"""Untrusted text → text that can only ever be text in a pane.

Message text reaches an agent's terminal through a bracketed paste. On tmux < 3.7 a buffer that
contains ``ESC[201~`` (or the 8-bit CSI U+009B) ends the paste early and the rest arrives as typed
keys, so every control character that a terminal could act on is removed here, before tmux ever
sees the text. What survives is printable text plus LF and TAB; words like ``Enter``, ``C-c``,
``;``, ``$HOME`` or ``#{...}`` stay plain text because the text is never put in argv.

Invisible format characters (Unicode category Cf) are removed too: bidi overrides, embeddings,
isolates and marks (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C) can make the pane show
text in an order other than the one the agent reads ("Trojan Source"), and zero-width spaces,
word joiners, BOMs or tag characters hide content from the person watching the pane. Kept: ZWJ
U+200D (emoji sequences such as 👩‍💻), ZWNJ U+200C (Persian and Indic spelling), and tag
characters only inside an emoji flag sequence (🏴 + tags + U+E007F, e.g. the flag of England).
Variation selectors (U+FE0E/U+FE0F) are not Cf and pass unchanged.

``clean_text`` is the weaker rule the ledger applies to everything it stores: only what cannot
be stored (lone surrogates) is replaced, so the ledger keeps what the sender sent.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["FIELD_MAX_LEN", "clean_text", "decode_utf8", "sanitize_field", "sanitize_text"]

#: Longest envelope field value kept; the header line must stay short and single-line.
FIELD_MAX_LEN = 64

# C0 controls except TAB (0x09) and LF (0x0a), DEL, C1 (U+0080–U+009F; ESC is 0x1b, in C0),
# and lone surrogates (they cannot be encoded as UTF-8, so they could never reach the pane).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SURROGATES = re.compile("[\ud800-\udfff]")
_FIELD_BAD = re.compile(r"[^A-Za-z0-9._@:+-]")

#: Every Cf code point (Unicode 15.1) except ZWNJ U+200C and ZWJ U+200D; tests check this
#: against the running Python's ``unicodedata``. Group 1 is an emoji flag tag sequence (kept).
_FORMAT = re.compile(
    "(\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f)"
    "|[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)


def _keep_flag(match: re.Match[str]) -> str:
    return match.group(1) or ""


def clean_text(text: str) -> str:
    """Return ``text`` as valid Unicode: surrogate pairs joined, lone surrogates → U+FFFD.

    Lone surrogates come from ``\\ud800`` escapes in JSON, or from bytes that were not UTF-8
    (argv and stdin decode them with ``surrogateescape``); SQLite cannot store them, so the
    ledger applies this to every text field at ingest. Anything else is returned unchanged.
    """
    if not SURROGATES.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def decode_utf8(data: bytes) -> tuple[str, bool]:
    """Decode bytes from outside (stdin, argv, a file); invalid sequences → U+FFFD.

    Returns the text and whether anything had to be replaced, so a caller can say so.
    """
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def sanitize_text(data: str | bytes) -> str:
    """Return ``data`` with every terminal control and invisible format character removed.

    Bytes are decoded as UTF-8 (invalid sequences → U+FFFD). CRLF and lone CR become LF (so a
    pasted line break is a line break, never a typed Return); other controls and the Cf
    characters described above are dropped; the result is NFC-normalized. Idempotent:
    ``sanitize_text(sanitize_text(x)) == sanitize_text(x)``.
    """
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = SURROGATES.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    text = _FORMAT.sub(_keep_flag, text)
    # NFC never produces a control or format character, so stripping first is enough.
    return unicodedata.normalize("NFC", text)


def sanitize_field(value: str | None, max_len: int = FIELD_MAX_LEN) -> str:
    """Restrict an envelope field to ``[A-Za-z0-9._@:+-]`` so it cannot break the header line.

    Other characters become ``_``; the result is cut to ``max_len``; empty input becomes ``_`` so
    ``key=value`` always has a value.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    cleaned = _FIELD_BAD.sub("_", value or "")[:max_len]
    return cleaned or "_"
