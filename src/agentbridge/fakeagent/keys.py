"""Raw terminal input → key events, with bracketed paste, like a real TUI reads its tty.

Bytes are decoded incrementally (invalid UTF-8 becomes U+FFFD) before parsing, so a multi-byte
character split across two reads is still one character and no input can raise.
"""

from __future__ import annotations

import codecs
import time
from dataclasses import dataclass
from enum import Enum

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
ESC_TIMEOUT = 0.05  # a lone ESC with nothing after it for this long is the Escape key


class KeyKind(Enum):
    """What one input event is."""

    TEXT = "text"
    PASTE = "paste"
    ENTER = "enter"
    BACKSPACE = "backspace"
    CLEAR_LINE = "clear_line"
    ESCAPE = "escape"
    CTRL_C = "ctrl_c"
    CTRL_D = "ctrl_d"
    OTHER = "other"  # arrows, function keys, alt-chords: read and ignored


@dataclass(frozen=True)
class KeyEvent:
    """One key press, typed text run, or whole paste."""

    kind: KeyKind
    text: str = ""


_CONTROL = {
    "\r": KeyKind.ENTER,
    "\x7f": KeyKind.BACKSPACE,
    "\x08": KeyKind.BACKSPACE,
    "\x15": KeyKind.CLEAR_LINE,
    "\x03": KeyKind.CTRL_C,
    "\x04": KeyKind.CTRL_D,
}


class InputParser:
    """Stateful parser: ``feed(bytes)`` returns the complete events seen so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # an incomplete escape sequence (normal mode)
        self._paste: list[str] | None = None  # chunks of the paste being read, if in one
        self._paste_tail = ""  # end of paste text that may be the start of PASTE_END
        self._esc_since: float | None = None

    @property
    def in_paste(self) -> bool:
        """True between ESC[200~ and ESC[201~."""
        return self._paste is not None

    def escape_deadline(self) -> float | None:
        """When a pending lone ESC becomes the Escape key (monotonic), if one is pending."""
        if self._pending == "\x1b" and self._esc_since is not None:
            return self._esc_since + ESC_TIMEOUT
        return None

    def expire(self, now: float | None = None) -> list[KeyEvent]:
        """Turn a lone ESC that waited long enough into an Escape event."""
        deadline = self.escape_deadline()
        if deadline is not None and (now if now is not None else time.monotonic()) >= deadline:
            self._pending = ""
            self._esc_since = None
            return [KeyEvent(KeyKind.ESCAPE)]
        return []

    def feed(self, data: bytes) -> list[KeyEvent]:
        """Parse a chunk of raw bytes read from the terminal."""
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        events: list[KeyEvent] = []
        typed: list[str] = []

        def flush_typed() -> None:
            if typed:
                events.append(KeyEvent(KeyKind.TEXT, "".join(typed)))
                typed.clear()

        i = 0
        n = len(text)
        while i < n:
            if self._paste is not None:
                i = self._feed_paste(text, i, events)
                continue
            ch = text[i]
            if ch == "\x1b":
                flush_typed()
                consumed = self._escape(text, i, events)
                if consumed == 0:  # incomplete: keep for the next read
                    self._pending = text[i:]
                    if self._pending == "\x1b":
                        self._esc_since = time.monotonic()
                    break
                i += consumed
                continue
            kind = _CONTROL.get(ch)
            if kind is not None:
                flush_typed()
                events.append(KeyEvent(kind))
            elif ch in "\n\t" or ch >= " ":
                typed.append(ch)
            i += 1
        flush_typed()
        return events

    def _feed_paste(self, text: str, i: int, events: list[KeyEvent]) -> int:
        """Consume paste text from ``i``; return the next index to parse."""
        assert self._paste is not None
        buf = self._paste_tail + text[i:]
        end = buf.find(PASTE_END)
        if end < 0:
            keep = 0
            for k in range(len(PASTE_END) - 1, 0, -1):
                if buf.endswith(PASTE_END[:k]):
                    keep = k
                    break
            self._paste.append(buf[: len(buf) - keep])
            self._paste_tail = buf[len(buf) - keep :]
            return len(text)
        self._paste.append(buf[:end])
        pasted = "".join(self._paste).replace("\r\n", "\n").replace("\r", "\n")
        events.append(KeyEvent(KeyKind.PASTE, pasted))
        consumed_from_text = end + len(PASTE_END) - len(self._paste_tail)
        self._paste = None
        self._paste_tail = ""
        return i + consumed_from_text

    def _escape(self, text: str, i: int, events: list[KeyEvent]) -> int:
        """Parse an escape sequence at ``i``; return chars consumed, 0 if incomplete."""
        if i + 1 >= len(text):
            return 0
        nxt = text[i + 1]
        if nxt == "[":
            j = i + 2
            while j < len(text) and not ("\x40" <= text[j] <= "\x7e"):
                if not ("\x20" <= text[j] <= "\x3f"):  # not a CSI byte: malformed, drop ESC[
                    events.append(KeyEvent(KeyKind.OTHER))
                    return j - i
                j += 1
            if j >= len(text):
                return 0
            seq = text[i : j + 1]
            if seq == PASTE_START:
                self._paste = []
                self._paste_tail = ""
            elif seq != PASTE_END:  # a stray end marker is ignored
                events.append(KeyEvent(KeyKind.OTHER, seq))
            return j + 1 - i
        if nxt == "O":
            if i + 2 >= len(text):
                return 0
            events.append(KeyEvent(KeyKind.OTHER, text[i : i + 3]))
            return 3
        if nxt == "\x1b":
            events.append(KeyEvent(KeyKind.ESCAPE))
            return 1
        events.append(KeyEvent(KeyKind.OTHER, text[i : i + 2]))  # alt-chord
        return 2
