"""``python -m agentbridge.hook_relay FILE``: append the hook's stdin JSON as one line to FILE.

Installed as the agent CLI's hook command. It must never break or slow the agent: stdlib only
(this package's ``__init__`` is tiny on purpose), nothing on stdout (Claude Code reads a hook's
stdout), exit 0 whatever happens. One ``O_APPEND`` write per record keeps concurrent relays'
lines whole (here and in :func:`shell_command`, the one agents really run); the host tails FILE
with the same ``FileTail`` as transcripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

MAX_STDIN = 16 * 1024 * 1024
MARK = "agentbridge.hook_relay"
#: The largest record the shell relay lands in one write(2): above the model API's own request
#: size limit (a prompt bigger than this can never be sent), so no turn's record is ever split.
MAX_RECORD = 64 * 1024 * 1024


def shell_command(path: str) -> str:
    """The hook command agents run: a POSIX shell one-liner, ~3 ms instead of ~18 ms for a
    Python start. A hook delays the agent's turn (``UserPromptSubmit`` runs before the prompt
    is processed), so its cost is latency every message pays.

    Why ``dd``: hooks may run concurrently (Claude's ``async`` hooks of one turn do), and
    ``tr`` writes a record in 4 KiB pieces (plus ``echo``'s newline), which concurrent relays
    interleaved into corrupt lines. ``dd`` with ``obs`` ≠ ``ibs`` collects its whole input
    (up to ``obs`` = :data:`MAX_RECORD`) and writes it once to the ``O_APPEND`` file: one
    write(2) per record, which POSIX makes atomic against other writes to a regular file, of
    any size (tested with 5 MB records; the reader keeps a partly written line). Only POSIX
    ``dd`` operands (GNU and BSD/macOS ``dd`` both reblock like this); stats go to /dev/null.

    JSON never holds a raw newline inside a string, so deleting newlines turns any payload into
    one line; the trailing comment is the marker that finds our entries in a settings file.
    """
    quoted = "'" + path.replace("'", "'\\''") + "'"
    return (
        f"umask 077; {{ tr -d '\\n'; echo; }} | dd ibs=65536 obs={MAX_RECORD} 2>/dev/null"
        f" >> {quoted} # {MARK}"
    )


def normalize(record: object) -> dict[str, object] | None:
    """A line of the hook log as ``{"event", "payload"}``: the shell relay writes the bare
    payload, this module's ``main`` writes the wrapped form; both are accepted."""
    if not isinstance(record, dict):
        return None
    if "payload" in record and "event" in record:
        return record
    event = record.get("hook_event_name")
    return {"event": event if isinstance(event, str) else "", "payload": record}


def build_record(raw: bytes) -> bytes:
    """The line to append: ``{"event", "payload", "ts"}`` + newline (bad input kept as text)."""
    try:
        payload = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else {}
    except ValueError:
        payload = {"raw": raw.decode("utf-8", "replace")}
    if not isinstance(payload, dict):
        payload = {"raw": payload}
    event = payload.get("hook_event_name")
    record = {
        "event": event if isinstance(event, str) else "",
        "payload": payload,
        "ts": time.time(),
    }
    # ensure_ascii keeps the line free of raw U+2028 etc.; json never emits a raw newline
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def append_line(path: str, line: bytes) -> None:
    """One write(2) with O_APPEND: concurrent appenders never interleave within a line."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        written = os.write(fd, line)
        if written != len(line):  # only on a full disk or similar; a torn line is corrupt anyway
            os.write(fd, line[written:])
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        raw = sys.stdin.buffer.read(MAX_STDIN)
        if args:
            append_line(args[0], build_record(raw))
    except Exception as exc:  # never break the agent: report on stderr only
        with contextlib.suppress(Exception):
            sys.stderr.write(f"agentbridge.hook_relay: {exc!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
