"""Runtime profile for Claude Code (``claude``), as measured on 2.1.197 against a mock model.

Why each piece (details: ``shared/notes/agent-clis.md``):

- Seeds ``.claude.json`` (onboarding done, this cwd trusted), merged into whatever the user
  already has, so no first-run screen blocks the pane: in the agent's ``env.CLAUDE_CONFIG_DIR``
  when set, else in ``<agent HOME>``.
- Hooks (Stop, StopFailure → the hook relay, async; see ``HOOK_EVENTS``) go into the agent's own
  ``<state_dir>/claude-settings.json`` (0600), passed with ``--settings``; the user's
  ``settings.json`` is never written. Measured on 2.1.197: hooks given with ``--settings`` fire,
  the user's own ``settings.json`` hooks still fire alongside them (merged, not replaced; an
  identical command in both runs once), and two agents sharing one config dir each get only
  their own relay file. ``skipDangerousModePermissionPrompt`` is honoured from that file too.
  Entries an older agentbridge merged into the user's ``settings.json`` (marked
  ``agentbridge.hook_relay``) are removed on ``prepare``, every user entry kept: with a shared
  config dir they sent every agent's hooks to the last-prepared agent's file.
- A ``--settings`` already in the agent's command (file or JSON) is folded into ours, so the
  CLI still sees the user's additional settings.
- Pins ``--session-id``, persisted in the state dir: the transcript path is known before the CLI
  starts, and after a restart ``--resume <id>`` continues the same conversation. Measured:
  ``--resume`` keeps the session id and appends to the same transcript file.
- The pane environment is a whitelist (see ``common.clean_env``) plus the variables that stop
  telemetry, auto-update and marketplace downloads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentbridge.config import AgentConfig
from agentbridge.events import TranscriptParser
from agentbridge.plugin.protocols import HookParser, LaunchSpec, ScreenKind, ScreenState
from agentbridge.runtimes import common
from agentbridge.runtimes.claude import mcp as claude_mcp
from agentbridge.runtimes.claude.errors import CLAUDE_ERRORS
from agentbridge.runtimes.permission_hooks import with_claude_permission_hook

__all__ = ["ClaudeCodeProfile", "claude_box", "claude_project_dir_name", "claude_screen_state"]

#: No ``UserPromptSubmit``: Claude runs it before the model request, and spawning the relay
#: cost every message 15–45 ms there even async (bench_realcli: bridge 1.3–1.5x the direct
#: driver with it, ~1.1x without). The transcript's prompt line (~110 ms after Enter, whatever
#: the model's speed) is the acceptance record instead, and teaches the hook parser the
#: envelope a ``Stop``'s ``prompt_id`` names (``ClaudeHookParser.learn``).
HOOK_EVENTS = ["Stop", "StopFailure"]
#: the agent's own settings file in its state dir, passed with ``--settings``
SETTINGS_FILE = "claude-settings.json"
SETTINGS_FLAG = "--settings"

PROFILE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
}

_MAX_DIR_NAME = 200


def _js_hash(text: str) -> int:
    """Java-style 32-bit string hash over UTF-16 code units, as Claude Code computes it."""
    value = 0
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        unit = data[i] | (data[i + 1] << 8)
        value = (value * 31 + unit) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
        if number == 0:
            return out


def claude_project_dir_name(cwd: Path | str) -> str:
    """``projects/`` sub-directory for ``cwd``: every non-alphanumeric char → ``-`` (long
    paths cut at 200 chars plus a hash), exactly as the CLI names it."""
    text = str(cwd)
    name = re.sub(r"[^a-zA-Z0-9]", "-", text)
    if len(name) <= _MAX_DIR_NAME:
        return name
    return f"{name[:_MAX_DIR_NAME]}-{_base36(abs(_js_hash(text)))}"


# --------------------------------------------------------------------------- screens

_ANSWER_MARKS = ("●", "⏺", "⎿", "✻", "✽", "✶", "✳", "✢", "·")
_RESETS = re.compile(r"\bresets?\s+(?:at\s+)?(?P<when>[^·\n()]+?)\s*(?:[·(\n]|$)", re.IGNORECASE)


def _last_turn_lines(lines: list[str], box_at: int | None) -> list[str]:
    """Lines of the last answer on screen (after the last prompt echo, above the input box).

    The prompt echo itself is skipped so a user's text can never read as an error screen.
    """
    end = box_at if box_at is not None else len(lines)
    start = 0
    for i in range(end - 1, -1, -1):
        if lines[i].startswith(("❯", "> ")):
            start = i + 1
            break
    out: list[str] = []
    answering = False
    for line in lines[start:end]:
        if line.lstrip().startswith(_ANSWER_MARKS):
            answering = True
        if answering and not line.startswith("─"):
            out.append(line.strip())
    return out


def claude_box(screen: str) -> str | None:
    """The input box: the last ``❯\u00a0`` line and the lines under it down to the border.

    Only the no-break-space form counts (a dialog's ``❯ 1. Yes`` is not a box); an empty box is
    the bare ``❯\u00a0``, so lines are never stripped of that NBSP before matching.
    """
    lines = common.strip_ansi(screen).split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("❯\u00a0"):
            parts = [lines[i][2:]]
            for line in lines[i + 1 :]:
                if line.lstrip().startswith("─"):
                    break
                parts.append(line.strip())
            return "\n".join(parts).strip(" \u00a0\n")
    return None


def claude_screen_state(screen: str) -> ScreenState:
    """Read a plain ``capture-pane`` of Claude Code (or the fake agent, which draws the same).

    Error kinds describe how the last turn on screen ended; ``input_text`` is still set when the
    input box is there. Matchers come from the real CLI's screens for mock 429/529/500 answers.
    """
    screen = common.strip_ansi(screen)
    lines = screen.rstrip("\n").split("\n")
    box = claude_box(screen)
    box_at = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("❯\u00a0")), None
    )
    if box_at is not None:
        while box_at > 0 and not lines[box_at - 1].startswith("─"):
            box_at -= 1
        box_at = max(box_at - 1, 0)
    whole = "\n".join(lines)
    tail = "\n".join(lines[-12:])
    if re.search(r"Do you want to (proceed|make this edit|create|allow)", tail) or (
        re.search(r"^\s*❯ 1\. ", tail, re.MULTILINE) and box is None
    ):
        trust = "trust" in tail.lower()
        return ScreenState(ScreenKind.PERMISSION_PROMPT, None, "trust dialog" if trust else "")
    if re.search(r"Select login method|Not logged in|Please run /login|Invalid API key", whole):
        return ScreenState(ScreenKind.LOGIN_REQUIRED, box, "login required")
    answer = "\n".join(_last_turn_lines(lines, box_at))
    if re.search(r"\blimit\b", answer, re.IGNORECASE) and (m := _RESETS.search(answer)):
        return ScreenState(ScreenKind.RATE_LIMITED, box, _first(answer, "limit"), m["when"].strip())
    if re.search(r"API Error: (Request rejected \(429\)|429\b)|rate_limit_error", answer):
        return ScreenState(ScreenKind.RATE_LIMITED, box, _first(answer, "API Error"))
    if re.search(r"Context limit reached|Prompt is too long|context window", answer):
        return ScreenState(ScreenKind.CONTEXT_FULL, box, _first(answer, "ontext"))
    if re.search(r"API Error\b|Repeated 529 Overloaded", answer):
        return ScreenState(ScreenKind.API_ERROR, box, _first(answer, "API Error"))
    if "esc to interrupt" in whole:
        return ScreenState(ScreenKind.BUSY, box)
    if box is not None:
        return ScreenState(ScreenKind.READY, box)
    if not whole.strip() or "Claude Code" in whole:
        return ScreenState(ScreenKind.STARTING)
    return ScreenState(ScreenKind.UNKNOWN)


def _pop_option(argv: list[str], flag: str) -> tuple[list[str], str | None]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE`` (every occurrence) and the last value."""
    out: list[str] = []
    value: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
            continue
        if arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
        else:
            out.append(arg)
        i += 1
    return out, value


def _first(text: str, needle: str) -> str:
    """The first line holding ``needle`` (the screen's own wording, for reports)."""
    return next((line for line in text.split("\n") if needle in line), text[:200]).lstrip("●⎿ ")


# --------------------------------------------------------------------------- the profile


class ClaudeCodeProfile:
    """Claude Code in a tmux pane; stateless, so one instance serves every agent."""

    name = "claude-code"
    strong_completion = True
    #: Claude Code 2.1.197 delivered pastes of up to 12.8 M chars intact; 3.2 M in 0.53 s, 6.4 M
    #: in 1.2 s (``scripts/measure_paste_limit.py``, docs/runtimes.md)
    paste_limit = 3_200_000
    error_text = CLAUDE_ERRORS
    #: argv used when the agent's config has no ``command``
    default_command: tuple[str, ...] = ("claude",)
    #: whether the CLI accepts ``--resume <id>`` (the fake agent reuses ``--session-id``)
    resume_flag = True
    #: empties the whole input box in one press (measured on 2.1.197: C-u empties one line, or
    #: nothing with the cursor at the start; a second Ctrl-C within 800 ms quits: see
    #: ``interrupts.clear_restored_prompt``)
    clear_input_key = "C-c"

    # -- launch ------------------------------------------------------------------------------

    def config_dir(self, agent: AgentConfig) -> Path:
        """``env.CLAUDE_CONFIG_DIR`` of the agent, else ``<agent HOME>/.claude``."""
        return common.env_path(agent, "CLAUDE_CONFIG_DIR") or common.agent_home(agent) / ".claude"

    def global_config_path(self, agent: AgentConfig) -> Path:
        """``.claude.json``: inside ``CLAUDE_CONFIG_DIR`` when set, else in HOME."""
        custom = common.env_path(agent, "CLAUDE_CONFIG_DIR")
        return (custom or common.agent_home(agent)) / ".claude.json"

    def prepare(self, agent: AgentConfig, state_dir: Path, resume: bool) -> LaunchSpec:
        """Seed ``.claude.json`` (merging), write our ``--settings`` file with the relay hooks,
        pick the session id, build argv and env."""
        state_dir.mkdir(parents=True, exist_ok=True)
        cwd = common.resolve_cwd(agent, state_dir)
        config_dir = self.config_dir(agent)
        hook_events = state_dir / "hooks.jsonl"
        argv = list(agent.command or self.default_command)
        self._seed_global(agent, cwd)
        common.clean_marked_hooks(config_dir / "settings.json")  # an older agentbridge's entries
        argv = self._with_settings(agent, argv, state_dir, cwd, hook_events)
        argv = claude_mcp.with_mcp(agent, state_dir, argv)  # `agentbridge mcp`, this agent's
        id_file = state_dir / "session-id"
        if not resume:
            id_file.unlink(missing_ok=True)
        session_id = common.stable_session_id(state_dir)
        transcript = config_dir / "projects" / claude_project_dir_name(cwd) / f"{session_id}.jsonl"
        if resume and self.resume_flag and transcript.exists():
            argv += ["--resume", session_id]
        else:
            argv += ["--session-id", session_id]
        env = common.clean_env(agent, PROFILE_ENV)
        if "CLAUDE_CONFIG_DIR" in env:
            env["CLAUDE_CONFIG_DIR"] = str(config_dir)
        return LaunchSpec(argv, env, cwd, session_id, hook_events, config_dir)

    def _seed_global(self, agent: AgentConfig, cwd: Path) -> None:
        """Onboarding done and this cwd trusted, keeping every other key of the user's file."""
        path = self.global_config_path(agent)
        data = common.load_json(path)
        before = json.dumps(data, sort_keys=True)
        data["hasCompletedOnboarding"] = True
        projects = data.get("projects")
        projects = dict(projects) if isinstance(projects, dict) else {}
        entry = projects.get(str(cwd))
        entry = dict(entry) if isinstance(entry, dict) else {}
        entry["hasTrustDialogAccepted"] = True
        entry.setdefault("hasCompletedProjectOnboarding", True)
        projects[str(cwd)] = entry
        data["projects"] = projects
        key = agent.env.get("ANTHROPIC_API_KEY")
        if key:  # else a "use this API key?" dialog defaulting to No blocks the pane
            responses = data.get("customApiKeyResponses")
            responses = dict(responses) if isinstance(responses, dict) else {}
            approved = list(responses.get("approved") or [])
            if key[-20:] not in approved:
                approved.append(key[-20:])
            responses["approved"] = approved
            data["customApiKeyResponses"] = responses
        if json.dumps(data, sort_keys=True) != before:
            common.atomic_write(path, json.dumps(data, indent=2) + "\n")

    def _with_settings(
        self, agent: AgentConfig, argv: list[str], state_dir: Path, cwd: Path, hook_events: Path
    ) -> list[str]:
        """``argv`` + ``--settings <state_dir>/claude-settings.json`` holding our relay hooks.

        A ``--settings`` the command already has (a file, relative to the cwd, or a JSON text)
        is folded into our file and dropped from argv, so the user's additional settings still
        reach the CLI, without relying on how it treats the flag given twice.
        """
        argv, user_value = _pop_option(argv, SETTINGS_FLAG)
        data: dict[str, Any] = {}
        if user_value is not None:
            if user_value.lstrip().startswith("{"):
                loaded = json.loads(user_value)
                if not isinstance(loaded, dict):
                    raise ValueError(f"{SETTINGS_FLAG}: expected a JSON object")
                data = loaded
            else:
                home = str(common.agent_home(agent))
                given = home + user_value[1:] if user_value.startswith("~/") else user_value
                data = common.load_json(cwd / given)
        hooks = data.get("hooks")
        hooks = hooks if isinstance(hooks, dict) else {}
        # async: the relay only records, it never answers, so the turn need not wait for it.
        # Async relays may run at once: each lands its record with one write(2)
        # (hook_relay.shell_command), and the hook parser takes a Stop before its prompt.
        command = common.hook_command(hook_events)
        data["hooks"] = common.merge_hooks(hooks, HOOK_EVENTS, command, background=True)
        data["hooks"] = with_claude_permission_hook(data["hooks"], state_dir, agent.name)
        if "--dangerously-skip-permissions" in argv:
            data["skipDangerousModePermissionPrompt"] = True
        path = state_dir / SETTINGS_FILE
        common.atomic_write(path, json.dumps(data, indent=2) + "\n")  # 0600
        return [*argv, SETTINGS_FLAG, str(path)]

    # -- reading back ------------------------------------------------------------------------

    def transcript_path(self, spec: LaunchSpec, pane_pid: int | None) -> Path | None:
        """``<config>/projects/<cwd with non-alphanumerics → ->/<session-id>.jsonl``."""
        if spec.config_dir is None or spec.session_id is None:
            return None
        projects = spec.config_dir / "projects"
        path = projects / claude_project_dir_name(spec.cwd) / f"{spec.session_id}.jsonl"
        if not path.exists():  # a cwd the CLI spells differently (symlinks): find it by id
            found = sorted(projects.glob(f"*/{spec.session_id}.jsonl"))
            if found:
                return found[0]
        return path

    def new_parser(self) -> TranscriptParser:
        """Helper 3's Claude transcript parser."""
        from agentbridge.runtimes.claude.transcript import ClaudeTranscriptParser

        parser: TranscriptParser = ClaudeTranscriptParser()
        return parser

    def new_hook_parser(self) -> HookParser | None:
        """Helper 3's parser of Claude hook relay records."""
        from agentbridge.runtimes.claude.transcript import ClaudeHookParser

        parser: HookParser = ClaudeHookParser()
        return parser

    def agent_status(self, spec: LaunchSpec, pane_pid: int | None) -> str | None:
        """``status`` of ``<config>/sessions/<pid>.json`` for the pane's pid or a child's."""
        if spec.config_dir is None or pane_pid is None:
            return None
        pids = [pane_pid, *common.child_pids(pane_pid)]
        for pid in list(pids[1:]):
            pids += common.child_pids(pid)
        for pid in pids:
            try:
                data: Any = json.loads((spec.config_dir / "sessions" / f"{pid}.json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("status"), str):
                if spec.session_id and data.get("sessionId") not in (None, spec.session_id):
                    continue
                return str(data["status"])
        return None

    def screen_state(self, screen: str, spec: LaunchSpec | None = None) -> ScreenState:
        """See :func:`claude_screen_state` (the same for every agent: ``spec`` is not needed)."""
        return claude_screen_state(screen)
