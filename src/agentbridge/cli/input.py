"""What the user typed or piped, as text the ledger can store; global flags on every subcommand.

On POSIX, argv and (in the C locale) stdin arrive with bytes that are not UTF-8 smuggled in as
lone surrogates (``surrogateescape``); a UTF-8 locale makes ``sys.stdin.read()`` raise instead.
Both used to end in a traceback. Here the original bytes are recovered and decoded with
U+FFFD for what is not UTF-8, and the caller is told so it can say it in one line.
"""

from __future__ import annotations

import argparse
import os
import sys

from agentbridge.sanitize import clean_text, decode_utf8

__all__ = ["add_global_flags", "decode_arg", "field_arg", "text_arg"]


def decode_arg(value: str) -> tuple[str, bool]:
    """``value`` from argv (or ``-`` for stdin) as valid text; ``True`` if bytes were replaced."""
    if value == "-":
        stream = getattr(sys.stdin, "buffer", None)  # None: a text stream put in by a caller
        if stream is None:
            text = sys.stdin.read()
            return clean_text(text), clean_text(text) != text
        return decode_utf8(stream.read())
    try:
        raw = os.fsencode(value)  # the bytes the user gave, if the value came from argv
    except UnicodeEncodeError:  # a real lone surrogate (e.g. main(["send", "\ud800"]))
        cleaned = clean_text(value)
        return cleaned, cleaned != value
    return decode_utf8(raw)


def text_arg(value: str) -> str:
    """A message or reply text from argv or stdin; says so (one line) if bytes were replaced."""
    text, replaced = decode_arg(value)
    if replaced:
        print(
            "agentbridge: note: text was not valid UTF-8; bad bytes became U+FFFD", file=sys.stderr
        )
    return text


def field_arg(value: str) -> str:
    """A short argv field (channel, sender, conversation, key): same decoding, no note."""
    return decode_arg(value)[0] if value != "-" else value


def add_global_flags(parser: argparse.ArgumentParser, config_help: str) -> None:
    """Accept ``--config`` and ``-v`` after the subcommand too (``agentbridge up --config F``).

    ``SUPPRESS`` as the default keeps a value given before the subcommand: the subparser only
    sets the attribute when the flag is given after it.
    """
    parser.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
