"""Untrusted text → text that can only ever be text in a pane.

Message text reaches an agent's terminal through a bracketed paste. On tmux < 3.7 a buffer that
contains ``ESC[201~`` (or the 8-bit CSI U+009B) ends the paste early and the rest arrives as typed
keys, so every control character that a terminal could act on is removed here, before tmux ever
sees the text. What survives is printable text plus LF and TAB; words like ``Enter``, ``C-c``,
``;``, ``$HOME`` or ``#{...}`` stay plain text because the text is never put in argv.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["FIELD_MAX_LEN", "sanitize_field", "sanitize_text"]

#: Longest envelope field value kept; the header line must stay short and single-line.
FIELD_MAX_LEN = 64

# C0 controls except TAB (0x09) and LF (0x0a), DEL, C1 (U+0080–U+009F; ESC is 0x1b, in C0),
# and lone surrogates (they cannot be encoded as UTF-8, so they could never reach the pane).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_FIELD_BAD = re.compile(r"[^A-Za-z0-9._@:+-]")


def sanitize_text(data: str | bytes) -> str:
    """Return ``data`` with every terminal control character removed.

    Bytes are decoded as UTF-8 (invalid sequences → U+FFFD). CRLF and lone CR become LF (so a
    pasted line break is a line break, never a typed Return); other controls are dropped; the
    result is NFC-normalized. Idempotent: ``sanitize_text(sanitize_text(x)) == sanitize_text(x)``.
    """
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = _SURROGATES.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    # NFC never produces a control character, so stripping first is enough.
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
