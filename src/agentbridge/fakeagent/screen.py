"""Draws the fake agent's screen: past turns, the ❯ input box, the status line, dialogs.

Each render repaints the whole screen; it is small and this keeps the output simple to reason
about for tests that read it back with ``capture-pane``.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field

PROMPT = "❯\u00a0"
BRACKETED_PASTE_ON = "\x1b[?2004h"
BRACKETED_PASTE_OFF = "\x1b[?2004l"

PERMISSION_DIALOG = [
    "Bash command",
    "  echo fake-permission-check",
    "Do you want to proceed?",
    "❯ 1. Yes",
    "  2. No",
]


@dataclass
class ScreenModel:
    """Everything shown; the app mutates it and calls :func:`render`."""

    history: list[str] = field(default_factory=list)
    box: str = ""
    status: str = "idle"  # idle | busy | waiting
    queued: list[str] = field(default_factory=list)
    notice: str = ""  # a one-line hint under the box (e.g. "Press Ctrl-C again to exit")


def _wrap(line: str, width: int) -> list[str]:
    """Wrap one display line; control characters are shown as ``?`` so text stays text."""
    line = "".join(
        "?" if (ch < " " and ch != "\t") or "\x7f" <= ch <= "\x9f" else ch for ch in line
    ).replace("\t", "    ")
    if not line:
        return [""]
    return textwrap.wrap(
        line, width, replace_whitespace=False, drop_whitespace=False, break_on_hyphens=False
    ) or [""]


def short(text: str, limit: int = 80) -> str:
    """First line of ``text`` cut to ``limit`` chars, for history and queue lines."""
    first = text.split("\n", 1)[0]
    more = "…" if len(first) > limit or "\n" in text else ""
    return first[:limit] + more


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal, or 24x80 when not a terminal."""
    try:
        size = os.get_terminal_size(fd)
        return max(size.lines, 5), max(size.columns, 20)
    except OSError:
        return 24, 80


def render(model: ScreenModel, rows: int, cols: int) -> str:
    """The escape string that repaints the whole screen for ``model``."""
    footer: list[str] = []
    cursor: tuple[int, int] | None = None
    if model.status == "waiting":
        footer += ["─" * cols, *PERMISSION_DIALOG]
    else:
        for q in model.queued:
            footer += _wrap(f"> {short(q)}", cols)
        if model.queued:
            footer.append("  Press up to edit queued messages")
        footer.append("─" * cols)
        box_lines = model.box.replace("\r", "").split("\n")
        for n, line in enumerate(box_lines):
            footer += _wrap((PROMPT if n == 0 else "  ") + line, cols)
        cursor = (len(footer), len(footer[-1]) + 1)
        footer.append("─" * cols)
        if model.status == "busy":
            footer.append("✻ Working… (esc to interrupt) · busy")
        else:
            footer.append("  ? for shortcuts · idle")
        if model.notice:
            footer.append(f"  {model.notice}")
    body: list[str] = []
    for entry in model.history:
        for n, line in enumerate(entry.replace("\r", "").split("\n")):
            body += _wrap(line if n == 0 else "  " + line, cols)
    room = max(rows - len(footer), 0)
    body = body[-room:] if room else []
    lines = (body + footer)[-rows:]
    out = "\x1b[H\x1b[2J" + "\r\n".join(lines)
    if cursor is not None:
        row = cursor[0] + len(lines) - len(footer)
        if 1 <= row <= rows:
            out += f"\x1b[{row};{min(cursor[1], cols)}H"
    return out
