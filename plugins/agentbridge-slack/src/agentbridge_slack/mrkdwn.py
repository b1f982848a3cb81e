"""Markdown (what agents write) → Slack mrkdwn (what Slack renders).

Slack's dialect differs where it hurts: ``*x*`` is bold (not italic), links are ``<url|text>``,
and ``&``, ``<``, ``>`` must be escaped or Slack reads them as control sequences (a stray
``<!channel>`` in a reply would ping a whole channel). Code (fenced or inline) is escaped and
otherwise left alone.
"""

from __future__ import annotations

import re

#: Slack truncates ``text`` beyond this; the channel declares a smaller, readable limit
HARD_LIMIT = 40_000
#: what the channel declares to the relay (Slack's own advice for one readable message)
MAX_MESSAGE_LENGTH = 4_000

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
_INLINE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)


def escape(text: str) -> str:
    """The three characters Slack treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _prose(text: str) -> str:
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        links.append(f"<{match.group(2)}|{escape(match.group(1))}>")
        return f"\x00{len(links) - 1}\x00"

    text = _LINK.sub(keep_link, text)
    text = escape(text)
    text = _HEADING.sub(lambda m: f"\x01{m.group(1)}\x01", text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _BOLD.sub(lambda m: f"\x01{m.group(1) or m.group(2)}\x01", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = text.replace("\x01", "*")
    return re.sub(r"\x00(\d+)\x00", lambda m: links[int(m.group(1))], text)


def to_mrkdwn(markdown: str) -> str:
    """Convert one reply part; code spans and fences survive verbatim (escaped)."""
    out: list[str] = []
    pos = 0
    pattern = re.compile(f"{_FENCE.pattern}|{_INLINE.pattern}", re.DOTALL)
    for match in pattern.finditer(markdown):
        out.append(_prose(markdown[pos : match.start()]))
        if match.group(0).startswith("```"):
            out.append("```" + escape(match.group(1) or "") + "```")
        else:
            out.append(escape(match.group(0)))
        pos = match.end()
    out.append(_prose(markdown[pos:]))
    return "".join(out)


def from_slack(text: str) -> str:
    """Slack's escaped inbound text back to what the sender typed (``&lt;`` → ``<``)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
