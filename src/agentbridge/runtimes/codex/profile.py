"""Runtime profile for the Codex CLI (``codex``), as measured on 0.169.0 against a mock model.

Why each piece (details: ``shared/notes/agent-clis.md``):

- ``$CODEX_HOME/config.toml`` (the agent's ``env.CODEX_HOME``, else ``<agent HOME>/.codex``)
  gets only what a headless start needs, edited in place so the user's keys and comments stay:
  ``check_for_update_on_startup = false`` (if unset), ``[features] daemon_auto_start = false``
  (else an app-server daemon outlives ``tmux kill-session``), ``[analytics] enabled = false``
  (if unset) and ``[projects."<cwd>"] trust_level = "trusted"``. Model and provider stay the
  user's choice.
- Hooks: only ``Stop`` (no ``UserPromptSubmit``: its cost before every model request; the
  rollout's user line is the acceptance record, see ``runtimes/codex/hooks.py``). Our relay goes
  on the command line as config overrides,
  ``-c 'hooks.<Event>=[{hooks=[{type="command",command="…"}]}]'`` (Codex's "session flags"
  layer), never into the user's ``$CODEX_HOME/hooks.json``. Measured on 0.169.0: these hooks
  fire, the user's own ``hooks.json`` and ``config.toml`` ``[hooks]`` still fire alongside them,
  and two agents sharing one CODEX_HOME each get only their own relay file. Entries an older
  agentbridge merged into ``hooks.json`` (marked ``agentbridge.hook_relay``) are removed on
  ``prepare``. ``--dangerously-bypass-hook-trust`` is still passed: session-flag hooks also
  need review (measured: without it the "Hooks need review" screen blocks the pane), and trust
  pre-seeded in the shared ``config.toml`` would differ per agent. Caveat: that flag also runs
  the user's own unreviewed hooks.
- There is no ``--session-id``: a new session's transcript is the newest rollout file of this cwd
  created after launch; on resume, the newest rollout of this cwd is continued with
  ``codex resume <id>`` (measured: it appends to the same rollout file).
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

from agentbridge.config import AgentConfig
from agentbridge.events import TranscriptParser
from agentbridge.plugin.protocols import HookParser, LaunchSpec, ScreenKind, ScreenState
from agentbridge.runtimes import common
from agentbridge.runtimes.codex import mcp as codex_mcp
from agentbridge.runtimes.codex.errors import CODEX_ERRORS
from agentbridge.runtimes.codex.hooks import HOOK_EVENTS, CodexHookParser
from agentbridge.runtimes.codex.transcript import CodexTranscriptParser
from agentbridge.runtimes.permission_hooks import codex_permission_override

__all__ = ["CodexProfile", "codex_box", "codex_screen_state", "hook_overrides", "toml_upsert"]

BYPASS_HOOK_TRUST = "--dangerously-bypass-hook-trust"
PLACEHOLDERS = ("Ask Codex to do anything", "Ask a follow-up question")


# --------------------------------------------------------------------------- config.toml


def _toml_str(value: str) -> str:
    # a JSON string is a TOML basic string (raw non-ASCII: TOML has no surrogate escapes)
    return json.dumps(value, ensure_ascii=False)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_str(value)
    return str(value)


def _lookup(doc: dict[str, Any], table: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = doc
    for part in table:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def toml_upsert(
    text: str, table: tuple[str, ...], key: str, value: object, override: bool = True
) -> str:
    """Set ``key = value`` in ``[table]`` of a TOML text, editing lines in place.

    Why not parse-and-dump: the user's comments and layout stay. ``override=False`` keeps a
    value the user already set. The result is re-parsed; an edit that would break the file
    raises ``ValueError`` instead of writing it.
    """
    doc = tomllib.loads(text)
    current = _lookup(doc, table) if table else doc
    if current is not None and key in current and (current[key] == value or not override):
        return text
    lines = text.split("\n")
    header = (
        "["
        + ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else _toml_str(p) for p in table)
        + "]"
    )
    entry = f"{key} = {_toml_value(value)}"
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    start = next((i for i, ln in enumerate(lines) if ln.strip() == header), None) if table else -1
    if start is None:
        new_text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + f"{header}\n{entry}\n"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
            len(lines),
        )
        hit = next((i for i in range(start + 1, end) if key_re.match(lines[i])), None)
        if hit is not None:
            lines[hit] = entry
        else:
            lines.insert(start + 1, entry)
        new_text = "\n".join(lines)
    check = _lookup(tomllib.loads(new_text), table) if table else tomllib.loads(new_text)
    if check is None or check.get(key) != value:
        raise ValueError(f"cannot set {'.'.join((*table, key))} in config.toml without breaking it")
    return new_text


def hook_overrides(hook_events: Path) -> list[str]:
    """``-c hooks.<Event>=[…]`` for each relayed event: our hooks for this invocation only."""
    command = common.hook_command(hook_events)
    groups = f'[{{hooks=[{{type="command",command={_toml_str(command)}}}]}}]'
    tomllib.loads(f"x = {groups}")  # a command TOML cannot carry must fail here, not in the CLI
    out: list[str] = []
    for event in HOOK_EVENTS:
        out += ["-c", f"hooks.{event}={groups}"]
    return out


# --------------------------------------------------------------------------- screens

_ANSWER_MARKS = ("•", "■", "└", "⚠", "◦", "✔", "✗")
_INTERRUPTED = re.compile(r"■\s+Conversation interrupted\b")


def _codex_box_at(lines: list[str]) -> int | None:
    return next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(("› ", "›\u00a0"))), None
    )


def codex_box(screen: str) -> str | None:
    """Codex's composer text: from the last ``›`` line down to the blank line above the footer.

    Unlike a stop-at-first-blank reader, a blank line inside a multi-line draft stays in the box
    (the footer is what follows the *last* blank line). The dim placeholder reads as "".
    """
    lines = common.strip_ansi(screen).rstrip("\n").split("\n")
    box_at = _codex_box_at(lines)
    if box_at is None:
        return None
    rest = lines[box_at:]
    footer = next((i for i, ln in enumerate(rest) if "? for shortcuts" in ln), None)
    if footer is not None:  # an early frame draws the footer with no blank line above it
        rest = rest[:footer]
    while rest and not rest[-1].strip():
        rest.pop()
    blanks = [i for i, ln in enumerate(rest) if not ln.strip()]
    body = rest[: blanks[-1]] if blanks else rest
    text = "\n".join([body[0][2:], *(ln[2:] if ln.startswith("  ") else ln for ln in body[1:])])
    text = text.strip()
    return "" if text in PLACEHOLDERS else text


def codex_screen_state(screen: str) -> ScreenState:
    """Read a plain ``capture-pane`` of Codex: its ``›`` composer, footer and error lines.

    Error lines (``■ …``) describe how the last turn on screen ended; ``input_text`` is still set
    when the composer is there. The dim placeholder ("Ask Codex to do anything") reads as "".
    """
    screen = common.strip_ansi(screen)
    lines = screen.rstrip("\n").split("\n")
    box = codex_box(screen)
    box_at = _codex_box_at(lines)
    whole = "\n".join(lines)
    if re.search(r"hooks? need review|Would you like to run|Allow command\?|Do you trust", whole):
        return ScreenState(ScreenKind.PERMISSION_PROMPT, None, "dialog")
    if re.search(
        r"Sign in with ChatGPT|Provide your own API key|Not signed in|Please log ?in", whole
    ):
        return ScreenState(ScreenKind.LOGIN_REQUIRED, box, "login required")
    answer = ""
    if box_at is not None:
        echo = _codex_box_at(lines[:box_at])
        region = lines[(echo + 1 if echo is not None else 0) : box_at]
        start = next(
            (i for i, ln in enumerate(region) if ln.lstrip().startswith(_ANSWER_MARKS)), len(region)
        )
        answer = "\n".join(ln.strip() for ln in region[start:])
    # "■ Conversation interrupted" is Esc, not a fault (the rollout says ``turn_aborted``):
    # read as an error it would requeue the interrupted message and hold the next one back
    errors = "\n".join(
        ln for ln in answer.split("\n") if ln.startswith("■") and not _INTERRUPTED.match(ln)
    )
    if m := re.search(
        r"usage limit.*?try again (?:at|in) (?P<when>[^.\n]+)", errors, re.IGNORECASE
    ):
        return ScreenState(ScreenKind.RATE_LIMITED, box, errors.split("\n")[0], m["when"].strip())
    if re.search(r"\b429\b|Too Many Requests|rate limit", errors, re.IGNORECASE):
        return ScreenState(ScreenKind.RATE_LIMITED, box, errors.split("\n")[0].lstrip("■ "))
    if re.search(r"context window|context_length|ran out of room", errors, re.IGNORECASE):
        return ScreenState(ScreenKind.CONTEXT_FULL, box, errors.split("\n")[0].lstrip("■ "))
    if errors:
        return ScreenState(ScreenKind.API_ERROR, box, errors.split("\n")[0].lstrip("■ "))
    if "esc to interrupt" in whole:
        return ScreenState(ScreenKind.BUSY, box)
    if "Waiting for startup" in whole:
        # its MCP servers are still starting (``agentbridge mcp`` is required): a prompt
        # pasted now stays in the box, so the CLI is not ready yet (seen on a loaded CI box)
        return ScreenState(ScreenKind.STARTING, box)
    if box is not None:
        return ScreenState(ScreenKind.READY, box)
    if not whole.strip() or "OpenAI Codex" in whole:
        return ScreenState(ScreenKind.STARTING)
    return ScreenState(ScreenKind.UNKNOWN)


# --------------------------------------------------------------------------- the profile


def _session_meta(path: Path) -> dict[str, Any]:
    """The ``session_meta`` payload of a rollout's first line ({} when unreadable)."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return {}
    payload = first.get("payload") if isinstance(first, dict) else None
    return payload if isinstance(payload, dict) and first.get("type") == "session_meta" else {}


class CodexProfile:
    """Codex in a tmux pane; one instance serves every agent (launch times kept per cwd)."""

    name = "codex"
    strong_completion = True
    #: Codex 0.169.0 delivered a 1,048,000-char paste intact (0.9 s) and refuses prompts over
    #: 1,048,576 characters ("Message exceeds the maximum length"): room for the envelope
    #: (``scripts/measure_paste_limit.py``, docs/runtimes.md)
    paste_limit = 1_000_000
    error_text = CODEX_ERRORS
    default_command: tuple[str, ...] = ("codex",)

    def __init__(self) -> None:
        self._launched: dict[tuple[str, str], float] = {}

    def codex_home(self, agent: AgentConfig) -> Path:
        """``env.CODEX_HOME`` of the agent, else ``<agent HOME>/.codex``."""
        return common.env_path(agent, "CODEX_HOME") or common.agent_home(agent) / ".codex"

    def prepare(self, agent: AgentConfig, state_dir: Path, resume: bool) -> LaunchSpec:
        """Seed config.toml (merging), relay hooks as ``-c`` overrides, resume or not."""
        state_dir.mkdir(parents=True, exist_ok=True)
        cwd = common.resolve_cwd(agent, state_dir)
        home = self.codex_home(agent)
        hook_events = state_dir / "hooks.jsonl"
        self._seed_config(home, cwd)
        common.clean_marked_hooks(home / "hooks.json")  # an older agentbridge's entries
        argv = list(agent.command or self.default_command)
        if BYPASS_HOOK_TRUST not in argv:
            argv.append(BYPASS_HOOK_TRUST)
        argv += hook_overrides(hook_events)
        argv += codex_permission_override(state_dir, agent.name)
        argv = codex_mcp.with_mcp(agent, state_dir, argv)  # `agentbridge mcp`, this agent's
        session_id = None
        if resume and (previous := self._latest_rollout(home, cwd, 0.0)) is not None:
            session_id = str(_session_meta(previous).get("id") or "") or None
            if session_id:
                argv += ["resume", session_id]
        env = common.clean_env(agent, {})
        if "CODEX_HOME" in env:
            env["CODEX_HOME"] = str(home)
        self._launched[(str(home), str(cwd))] = time.time()
        return LaunchSpec(argv, env, cwd, session_id, hook_events, home)

    def _seed_config(self, home: Path, cwd: Path) -> None:
        path = home / "config.toml"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        new = toml_upsert(text, (), "check_for_update_on_startup", False, override=False)
        new = toml_upsert(new, ("features",), "daemon_auto_start", False)
        new = toml_upsert(new, ("analytics",), "enabled", False, override=False)
        new = toml_upsert(new, ("projects", str(cwd)), "trust_level", "trusted")
        if new != text:
            common.atomic_write(path, new if new.endswith("\n") else new + "\n")

    @staticmethod
    def _latest_rollout(
        home: Path, cwd: Path, since: float, session_id: str | None = None
    ) -> Path | None:
        """The newest rollout of ``cwd`` (or of ``session_id``) created at or after ``since``."""
        pattern = f"*/*/*/rollout-*{session_id}.jsonl" if session_id else "*/*/*/rollout-*.jsonl"
        best: tuple[float, Path] | None = None
        for path in (home / "sessions").glob(pattern):
            try:
                created = path.stat().st_ctime
            except OSError:
                continue
            if created + 1.0 < since or (best is not None and created <= best[0]):
                continue
            if session_id is None and _session_meta(path).get("cwd") != str(cwd):
                continue
            best = (created, path)
        return best[1] if best else None

    def transcript_path(self, spec: LaunchSpec, pane_pid: int | None) -> Path | None:
        """The rollout file: by session id when resuming, else the newest one of this cwd
        created after launch (None until the first turn writes it)."""
        if spec.config_dir is None:
            return None
        if spec.session_id:
            return self._latest_rollout(spec.config_dir, spec.cwd, 0.0, spec.session_id)
        since = self._launched.get((str(spec.config_dir), str(spec.cwd)), 0.0)
        return self._latest_rollout(spec.config_dir, spec.cwd, since)

    def new_parser(self) -> TranscriptParser:
        """A :class:`CodexTranscriptParser`."""
        return CodexTranscriptParser()

    def new_hook_parser(self) -> HookParser | None:
        """Hook records carry ``turn_id``; the rollout's prompt lines teach it its envelope."""
        parser: HookParser = CodexHookParser()
        return parser

    def agent_status(self, spec: LaunchSpec, pane_pid: int | None) -> str | None:
        """Codex publishes no status file: None (screen and transcript are the evidence)."""
        return None

    def screen_state(self, screen: str, spec: LaunchSpec | None = None) -> ScreenState:
        """See :func:`codex_screen_state` (the same for every agent: ``spec`` is not needed)."""
        return codex_screen_state(screen)
