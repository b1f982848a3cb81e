"""The ❯ input box: typed text and pastes, with Claude's placeholder for big pastes.

The box keeps the full text of every paste (that is what gets submitted) while showing large ones
as ``[Pasted text #N +M lines]``, exactly what a bridge sees on the real screen.
"""

from __future__ import annotations

from dataclasses import dataclass

PLACEHOLDER_MIN_LINES = 4
PLACEHOLDER_MIN_CHARS = 900


@dataclass
class _Segment:
    text: str
    placeholder: str | None = None  # shown instead of text when set; deleted as one unit


class InputBox:
    """Editable prompt text made of typed runs and pastes."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._paste_count = 0

    @property
    def text(self) -> str:
        """The full text a submit would send."""
        return "".join(s.text for s in self._segments)

    @property
    def display(self) -> str:
        """What the screen shows on the ❯ line(s)."""
        return "".join(s.placeholder or s.text for s in self._segments)

    def type(self, text: str) -> None:
        """Append typed characters."""
        if not text:
            return
        if self._segments and self._segments[-1].placeholder is None:
            self._segments[-1].text += text
        else:
            self._segments.append(_Segment(text))

    def paste(self, text: str) -> None:
        """Append a paste; big ones get a numbered placeholder like Claude Code's."""
        if not text:
            return
        self._paste_count += 1
        newlines = text.count("\n")
        if newlines + 1 >= PLACEHOLDER_MIN_LINES or len(text) >= PLACEHOLDER_MIN_CHARS:
            label = f"[Pasted text #{self._paste_count} +{newlines} lines]"
            self._segments.append(_Segment(text, label))
        else:
            self.type(text)

    def restore(self, text: str) -> None:
        """Put a prompt back in front of the box (after an interrupt), as Claude does."""
        current = self._segments
        self._segments = []
        self.paste(text)
        if current:
            self._segments.append(_Segment("\n"))
            self._segments.extend(current)

    def backspace(self) -> None:
        """Delete one character, or a whole pasted-text placeholder."""
        if not self._segments:
            return
        last = self._segments[-1]
        if last.placeholder is not None or len(last.text) <= 1:
            self._segments.pop()
        else:
            last.text = last.text[:-1]

    def clear(self) -> None:
        """Empty the box (C-u)."""
        self._segments = []

    def take(self) -> str:
        """Return the full text and empty the box (submit)."""
        text = self.text
        self.clear()
        return text
