"""Chunking and HTML rendering, checked against the fake server's Telegram-like HTML parser."""

from __future__ import annotations

import random

from agentbridge_telegram.formatting import chunk_text, to_html, utf16_len
from agentbridge_telegram.testing import visible_text


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("hello") == ["hello"]
    assert chunk_text("") == []


def test_cuts_prefer_newlines_and_keep_every_word() -> None:
    text = "\n".join(f"line {i} " + "x" * 50 for i in range(400))
    chunks = chunk_text(text, 4096)
    assert all(utf16_len(c) <= 4096 for c in chunks)
    assert "\n".join(chunks) == text  # cut at newlines only: nothing lost


def test_fence_cut_by_a_boundary_is_closed_and_reopened() -> None:
    text = "intro\n```python\n" + "print(1)\n" * 1000 + "```\nafter"
    chunks = chunk_text(text, 4096)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert utf16_len(chunk) <= 4096
        assert chunk.count("```") % 2 == 0  # every chunk's fences balanced
        rendered = to_html(chunk)
        visible, error = visible_text(rendered, "HTML")
        assert error is None, (error, rendered[:200])
        assert utf16_len(visible) <= 4096
    assert chunks[1].startswith("```python\n")


def test_html_escapes_everything_outside_our_tags() -> None:
    rendered = to_html("a <script> & **b** `c<d`\n```\n<pre>\n```")
    visible, error = visible_text(rendered, "HTML")
    assert error is None
    assert "<script>" not in rendered
    assert visible == "a <script> & b c<d\n<pre>"


def test_empty_fence_is_never_an_empty_message() -> None:
    assert visible_text(to_html("```\n```"), "HTML")[0].strip()


def test_random_texts_always_fit_and_parse() -> None:
    rng = random.Random(7)
    alphabet = ["a", " ", "\n", "<", ">", "&", "`", "*", "😀", "```", "```py\n", "é"]
    for _ in range(150):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9000)))
        for chunk in chunk_text(text, 4096):
            assert utf16_len(chunk) <= 4096
            visible, error = visible_text(to_html(chunk), "HTML")
            assert error is None
            assert utf16_len(visible) <= 4096
