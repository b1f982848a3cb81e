"""Reply text → Telegram messages: chunks that always fit, rendered as safe HTML.

Telegram's limit (4096) counts the text *after* entity parsing, in UTF-16 code units. We
chunk the raw reply so that each raw chunk fits; the HTML rendering only removes characters
from what is visible (fence markers, backticks, asterisks), so both the formatted message and
its plain-text fallback fit too. A code fence cut by a chunk boundary is closed at the end of
one chunk and reopened at the start of the next, so each chunk renders on its own.
"""

from __future__ import annotations

import html
import re

MAX_MESSAGE_LENGTH = 4096
_FENCE_CLOSE = "\n```"
_LANG = re.compile(r"[A-Za-z0-9_+#.-]{1,30}")
_TAG = re.compile(r"<[^>]+>")
#: `code` or **bold** (bold never contains a backtick, so the two can never interleave)
_INLINE = re.compile(r"`([^`\n]+)`|\*\*([^*`\n]+?)\*\*")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def _fence_lang(line: str) -> str | None:
    """The language of a fence line (``""`` for a bare fence), None when not a fence."""
    stripped = line.strip()
    if not stripped.startswith("```"):
        return None
    match = _LANG.fullmatch(stripped[3:].strip())
    return match.group(0) if match else ""


def _open_fence_after(text: str) -> str | None:
    """Scan ``text`` line by line: the language of a fence still open at its end, else None."""
    lang: str | None = None
    for line in text.split("\n"):
        found = _fence_lang(line)
        if found is None:
            continue
        lang = found if lang is None else None
    return lang


def _prefix_within(text: str, budget: int) -> int:
    """The largest index ``n`` with ``utf16_len(text[:n]) <= budget``."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return index
    return len(text)


def _cut(text: str, budget: int) -> tuple[str, str]:
    """Split at the last newline (or space) that keeps the head within ``budget``."""
    limit = _prefix_within(text, budget)
    if limit >= len(text):
        return text, ""
    window = text[:limit]
    for sep in ("\n", " "):
        at = window.rfind(sep)
        if at >= budget // 2:
            return text[:at], text[at + 1 :]
    return window, text[limit:]


def chunk_text(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Raw chunks, each within ``limit`` UTF-16 units, fences closed and reopened at cuts."""
    if limit < 64:
        raise ValueError("limit too small to chunk with fence markers")
    chunks: list[str] = []
    rest = text
    while rest:
        if utf16_len(rest) <= limit:
            head, rest = rest, ""
        else:
            head, rest = _cut(rest, limit - len(_FENCE_CLOSE))
        # a reopened fence is part of ``rest`` itself, so every scan starts outside a fence
        still_open = _open_fence_after(head)
        if still_open is not None and rest:
            head += _FENCE_CLOSE
            rest = f"```{still_open}\n{rest}"
        if head.strip():
            chunks.append(head)
        if rest and not rest.strip():
            break
    return chunks or ([text] if text else [])


def _inline(text: str) -> str:
    """Escape a prose segment, turning `code` and **bold** into (never nested) tags."""
    out: list[str] = []
    last = 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last : match.start()], quote=False))
        code, bold = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
        else:
            out.append(f"<b>{html.escape(bold, quote=False)}</b>")
        last = match.end()
    out.append(html.escape(text[last:], quote=False))
    return "".join(out)


def to_html(chunk: str) -> str:
    """Render one raw chunk as Telegram HTML: everything escaped, fences as ``<pre>``."""
    out: list[str] = []
    prose: list[str] = []
    code: list[str] | None = None
    lang = ""
    for line in chunk.split("\n"):
        found = _fence_lang(line)
        if code is None and found is not None:
            if prose:
                out.append(_inline("\n".join(prose)))
                prose = []
            code, lang = [], found
        elif code is not None and found is not None:
            out.append(_pre("\n".join(code), lang))
            code = None
        elif code is not None:
            code.append(line)
        else:
            prose.append(line)
    if code is not None:
        out.append(_pre("\n".join(code), lang))
    if prose:
        out.append(_inline("\n".join(prose)))
    rendered = "\n".join(part for part in out if part)
    if not _TAG.sub("", rendered).strip():  # e.g. an empty fence: Telegram refuses empty text
        return html.escape(chunk, quote=False)
    return rendered


def _pre(code: str, lang: str) -> str:
    body = html.escape(code, quote=False)
    if lang:
        return f'<pre><code class="language-{html.escape(lang)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"
