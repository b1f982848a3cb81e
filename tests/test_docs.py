"""docs/plugins.md documents every hook, and only hooks that exist (as datasette's test_docs)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from agentbridge.kinds import ChangeKind, DocumentedStrEnum, ReceiptKind, WaitKind, markdown_table
from agentbridge.plugin import hookspecs

PLUGINS_MD = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
#: a ``##`` heading that is one snake_case word names a hook; others are prose sections
HOOK_HEADING = re.compile(r"^## ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def hook_names() -> dict[str, inspect.Signature]:
    """Every hookspec in ``agentbridge.plugin.hookspecs`` and its signature."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, marker)
    }


def sections() -> dict[str, str]:
    """Hook heading → the text of its section (up to the next heading of level 1 or 2)."""
    text = PLUGINS_MD.read_text(encoding="utf-8")
    out = {}
    for match in HOOK_HEADING.finditer(text):
        rest = text[match.end() :]
        end = re.search(r"^#{1,2} ", rest, re.MULTILINE)
        out[match[1]] = rest[: end.start()] if end else rest
    return out


def test_hookspecs_are_found() -> None:
    assert {"register_channels", "register_runtimes", "host_woke"} <= set(hook_names())


@pytest.mark.parametrize("hook", sorted(hook_names()))
def test_every_hook_is_documented(hook: str) -> None:
    assert hook in sections(), f"docs/plugins.md has no '## {hook}' section"


@pytest.mark.parametrize("hook", sorted(hook_names()))
def test_every_argument_is_documented(hook: str) -> None:
    body = sections().get(hook, "")
    for arg in hook_names()[hook].parameters:
        assert f"`{arg}`" in body, f"'## {hook}' does not describe its argument `{arg}`"
    assert "returns" in body, f"'## {hook}' does not say what it returns"
    assert "@hookimpl" in body, f"'## {hook}' has no example implementation"


def test_every_documented_hook_exists() -> None:
    unknown = set(sections()) - set(hook_names())
    assert not unknown, f"docs/plugins.md documents hooks that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("kinds", [ReceiptKind, WaitKind, ChangeKind], ids=lambda k: k.__name__)
def test_kind_tables_match_the_enums(kinds: type[DocumentedStrEnum]) -> None:
    """Each kind enum's table (value, member docstring) is in docs/plugins.md as generated."""
    assert all(member.__doc__ for member in kinds), f"a {kinds.__name__} member has no docstring"
    table = markdown_table(kinds)
    assert table in PLUGINS_MD.read_text(encoding="utf-8"), (
        f"docs/plugins.md: the {kinds.__name__} table is stale; paste\n{table}"
    )
