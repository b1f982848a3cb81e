"""The runtimes' input-box readers: what the injector sees of Claude Code's box and Codex's
composer, on plain and ``capture-pane -e`` screens (the readers the injector is handed)."""

from __future__ import annotations

from agentbridge.runtimes.claude.profile import claude_box, claude_screen_state
from agentbridge.runtimes.codex.profile import codex_box, codex_screen_state

BORDER = "─" * 20


def test_claude_box() -> None:
    assert claude_box(f"hist\n{BORDER}\n❯\u00a0\n{BORDER}\n  ? for shortcuts") == ""
    screen = f"{BORDER}\n❯\u00a0first line that wr\naps\n  second\n{BORDER}\n  ? for shortcuts"
    assert claude_box(screen) == "first line that wr\naps\nsecond"
    assert claude_box(f"{BORDER}\n❯\u00a0a\n  \n  b\n{BORDER}") == "a\n\nb"
    assert claude_box("Do you want to proceed?\n❯ 1. Yes\n  2. No") is None  # a dialog
    assert claude_box("") is None


def test_codex_box() -> None:
    screen = "› Explain this\n  and that\n\n  ? for shortcuts   100% context left"
    assert codex_box(screen) == "Explain this\nand that"
    assert codex_box("› \n\n  footer") == ""
    assert codex_box("no composer") is None
    # a blank line inside a draft stays in it (the footer follows the *last* blank line)
    assert codex_box("› first\n\n  second\n\n  footer") == "first\n\nsecond"


def test_escaped_screens_read_empty_boxes_as_empty() -> None:
    # Codex 0.169's empty composer, as `capture-pane -e` shows it: the dim suggestion is no text.
    codex = "\x1b[1m›\x1b[0m\x1b[39m\x1b[49m \x1b[2mAsk Codex to do anything\x1b[0m\n\n  footer"
    assert codex_box(codex) == ""
    assert codex_screen_state(codex).input_text == ""
    assert codex_box("\x1b[1m›\x1b[0m real text\n\n  footer") == "real text"
    # Claude Code 2.1.197's empty box: the cursor is a reverse-video cell.
    claude = "─────\n\x1b[39m❯\xa0\x1b[7m \x1b[0m\n─────"
    assert claude_box(claude) == ""
    assert claude_screen_state(claude).input_text == ""


def test_codex_waiting_for_its_mcp_servers_is_not_ready() -> None:
    """Seen in CI: a prompt pasted while Codex still says "Waiting for startup" (its required
    MCP server starting) stays in the composer; until that line goes, Codex is starting."""
    from agentbridge.plugin.protocols import ScreenKind

    waiting = "› \n\n  mock-model default · /work\n  Waiting for startup  · esc cancel"
    assert codex_screen_state(waiting).kind is ScreenKind.STARTING
    ready = "› \n\n  mock-model default · /work\n  ? for shortcuts   100% context left"
    assert codex_screen_state(ready).kind is ScreenKind.READY
