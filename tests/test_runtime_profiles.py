"""Runtime profiles: seeding merges (never clobbers), the env whitelist, parsers on real lines.

The transcripts and screens under ``tests/data`` were captured from the real Claude Code 2.1.197
and Codex 0.169.0 running against ``agentbridge.testing.mock_model``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agentbridge.config import AgentConfig
from agentbridge.events import AgentEventKind
from agentbridge.plugin.protocols import RuntimeProfile, ScreenKind
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile, DemoProfile, GenericProfile
from agentbridge.runtimes.claude.profile import claude_project_dir_name
from agentbridge.runtimes.codex.profile import toml_upsert
from agentbridge.runtimes.codex.transcript import CodexTranscriptParser
from agentbridge.runtimes.common import hook_command
from agentbridge.runtimes.generic import DEFAULT_READY
from agentbridge.testing.mock_model import answer_for

DATA = Path(__file__).parent / "data"
USER_HOOK = {"hooks": [{"type": "command", "command": "echo mine"}]}


def _agent(tmp_path: Path, runtime: str, **env: str) -> AgentConfig:
    return AgentConfig(
        name="a",
        runtime=runtime,
        cwd=tmp_path / "work",
        env={"HOME": str(tmp_path / "home"), **env},
    )


def test_profiles_satisfy_the_protocol() -> None:
    for profile in (ClaudeCodeProfile(), CodexProfile(), DemoProfile(), GenericProfile()):
        assert isinstance(profile, RuntimeProfile)
    assert GenericProfile().strong_completion is False


def _ours(hooks: dict[str, Any]) -> list[Any]:
    return [g for gs in hooks.values() for g in gs if "agentbridge.hook_relay" in json.dumps(g)]


def test_claude_seeding_merges_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude.json").write_text(json.dumps({"userID": "u1", "projects": {"/x": {"k": 1}}}))
    settings = {"model": "opus", "hooks": {"Stop": [USER_HOOK], "PreToolUse": [USER_HOOK]}}
    user_settings = home / ".claude" / "settings.json"
    user_settings.write_text(json.dumps(settings))
    agent = _agent(tmp_path, "claude-code")
    profile = ClaudeCodeProfile()
    spec = profile.prepare(agent, tmp_path / "state", resume=True)
    again = profile.prepare(agent, tmp_path / "state", resume=True)
    assert again.session_id == spec.session_id and again.argv == spec.argv
    ours = tmp_path / "state" / "claude-settings.json"
    mcp = ["--mcp-config", str(tmp_path / "state" / "claude-mcp.json")]
    assert spec.argv == [
        "claude",
        "--settings",
        str(ours),
        *mcp,
        "--allowedTools",
        "mcp__agentbridge",
        "--session-id",
        str(spec.session_id),
    ]

    glob = json.loads((home / ".claude.json").read_text())
    assert glob["userID"] == "u1" and glob["projects"]["/x"] == {"k": 1}
    assert glob["hasCompletedOnboarding"] is True
    assert glob["projects"][str(spec.cwd)]["hasTrustDialogAccepted"] is True
    assert json.loads(user_settings.read_text()) == settings  # the user's file is not touched
    assert ours.stat().st_mode & 0o777 == 0o600
    hooks = json.loads(ours.read_text())["hooks"]
    # no UserPromptSubmit: its cost (HOOK_EVENTS); PermissionRequest blocks: it answers
    assert sorted(hooks) == ["PermissionRequest", "Stop", "StopFailure"]
    (ask,) = hooks["PermissionRequest"]
    assert "async" not in ask["hooks"][0] and ask["hooks"][0]["timeout"] > 86400
    assert "agentbridge.agent.permission_hook" in ask["hooks"][0]["command"]
    for event in ("Stop", "StopFailure"):
        assert len(hooks[event]) == 1 and _ours({event: hooks[event]})
        assert hooks[event][0]["hooks"][0]["async"] is True
        assert str(tmp_path / "state" / "hooks.jsonl") in json.dumps(hooks[event])


def test_claude_agents_sharing_a_config_dir_keep_their_own_hooks(tmp_path: Path) -> None:
    """The old way merged hooks into the shared settings.json and replaced them on each
    prepare: only the last-prepared agent's relay file got hooks, for both agents."""
    profile = ClaudeCodeProfile()
    one = AgentConfig(
        name="one", runtime="claude-code", cwd=tmp_path / "p1", env={"HOME": str(tmp_path)}
    )
    two = dataclasses.replace(one, name="two", cwd=tmp_path / "p2")
    spec1 = profile.prepare(one, tmp_path / "s1", resume=True)
    spec2 = profile.prepare(two, tmp_path / "s2", resume=True)
    assert spec1.config_dir == spec2.config_dir
    for spec, state in ((spec1, "s1"), (spec2, "s2")):
        flag = spec.argv.index("--settings")
        data = json.loads(Path(spec.argv[flag + 1]).read_text())
        assert spec.hook_events == tmp_path / state / "hooks.jsonl"
        # each agent's hooks name its own state dir (relay file; permission hook's argument)
        assert all(str(spec.hook_events.parent) in json.dumps(g) for g in _ours(data["hooks"]))
    assert not (tmp_path / ".claude" / "settings.json").exists()


def test_claude_removes_hooks_an_older_agentbridge_merged(tmp_path: Path) -> None:
    old_relay = {
        "hooks": [{"type": "command", "command": "x >> /old/hooks.jsonl # agentbridge.hook_relay"}]
    }
    mixed = {
        "matcher": "",
        "hooks": [{"type": "command", "command": "echo mine too"}, *old_relay["hooks"]],
    }
    settings = {
        "model": "opus",
        "skipDangerousModePermissionPrompt": True,
        "hooks": {
            "Stop": [USER_HOOK, old_relay],
            "UserPromptSubmit": [old_relay],
            "StopFailure": [mixed],
            "PreToolUse": [USER_HOOK],
            "Notification": [],
        },
    }
    user_settings = tmp_path / "home" / ".claude" / "settings.json"
    user_settings.parent.mkdir(parents=True)
    user_settings.write_text(json.dumps(settings))
    os.chmod(user_settings, 0o644)
    ClaudeCodeProfile().prepare(_agent(tmp_path, "claude-code"), tmp_path / "state", resume=True)
    cleaned = json.loads(user_settings.read_text())
    assert cleaned == {
        "model": "opus",
        "skipDangerousModePermissionPrompt": True,
        "hooks": {
            "Stop": [USER_HOOK],
            "StopFailure": [
                {"matcher": "", "hooks": [{"type": "command", "command": "echo mine too"}]}
            ],
            "PreToolUse": [USER_HOOK],
            "Notification": [],
        },
    }
    assert user_settings.stat().st_mode & 0o777 == 0o644
    # a settings.json that held nothing but our entries (we created it) goes away
    user_settings.write_text(json.dumps({"hooks": {"Stop": [old_relay]}}))
    ClaudeCodeProfile().prepare(_agent(tmp_path, "claude-code"), tmp_path / "state", resume=True)
    assert not user_settings.exists()


def test_claude_folds_a_user_settings_flag_into_ours(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "extra.json").write_text(
        json.dumps({"model": "sonnet", "hooks": {"Stop": [USER_HOOK]}})
    )
    agent = dataclasses.replace(
        _agent(tmp_path, "claude-code"),
        command=["claude", "--settings", "extra.json", "--dangerously-skip-permissions"],
    )
    spec = ClaudeCodeProfile().prepare(agent, tmp_path / "state", resume=True)
    assert spec.argv.count("--settings") == 1 and "extra.json" not in spec.argv
    ours = json.loads((tmp_path / "state" / "claude-settings.json").read_text())
    assert ours["model"] == "sonnet" and ours["skipDangerousModePermissionPrompt"] is True
    assert ours["hooks"]["Stop"][0] == USER_HOOK and len(ours["hooks"]["Stop"]) == 2
    inline = dataclasses.replace(agent, command=["claude", '--settings={"model": "haiku"}'])
    ClaudeCodeProfile().prepare(inline, tmp_path / "state", resume=True)
    ours = json.loads((tmp_path / "state" / "claude-settings.json").read_text())
    assert ours["model"] == "haiku" and "skipDangerousModePermissionPrompt" not in ours


def test_claude_honours_claude_config_dir(tmp_path: Path) -> None:
    custom = tmp_path / "cfg"
    agent = _agent(tmp_path, "claude-code", CLAUDE_CONFIG_DIR=str(custom))
    profile = ClaudeCodeProfile()
    spec = profile.prepare(agent, tmp_path / "state", resume=True)
    assert (custom / ".claude.json").exists() and not (custom / "settings.json").exists()
    assert not (tmp_path / "home" / ".claude").exists()
    assert spec.env["CLAUDE_CONFIG_DIR"] == str(custom)
    path = profile.transcript_path(spec, None)
    assert (
        path == custom / "projects" / claude_project_dir_name(spec.cwd) / f"{spec.session_id}.jsonl"
    )


def test_claude_resume_uses_resume_only_when_the_transcript_exists(tmp_path: Path) -> None:
    agent = _agent(tmp_path, "claude-code")
    profile = ClaudeCodeProfile()
    first = profile.prepare(agent, tmp_path / "state", resume=True)
    transcript = profile.transcript_path(first, None)
    assert transcript is not None
    transcript.parent.mkdir(parents=True)
    transcript.write_text("{}\n")
    second = profile.prepare(agent, tmp_path / "state", resume=True)
    assert second.argv[-2:] == ["--resume", first.session_id]
    fresh = profile.prepare(agent, tmp_path / "state", resume=False)
    assert fresh.session_id != first.session_id and "--session-id" in fresh.argv


def test_env_is_whitelisted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "not-this-one"))
    agent = _agent(tmp_path, "claude-code", ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    for profile in (ClaudeCodeProfile(), CodexProfile(), DemoProfile()):
        env = profile.prepare(agent, tmp_path / profile.name, resume=True).env
        assert "TELEGRAM_BOT_TOKEN" not in env and "OPENAI_API_KEY" not in env
        assert env.get("CLAUDE_CONFIG_DIR") != str(tmp_path / "not-this-one")
        assert env["HOME"] == str(tmp_path / "home")
        assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    claude_env = ClaudeCodeProfile().prepare(agent, tmp_path / "c", resume=True).env
    assert "CLAUDE_CONFIG_DIR" not in claude_env
    assert claude_env["DISABLE_TELEMETRY"] == "1"
    assert claude_env["CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL"] == "1"


def test_codex_seeding_keeps_user_config_and_comments(tmp_path: Path) -> None:
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    user_toml = (
        '# my settings\nmodel = "mock-model"\ncheck_for_update_on_startup = true\n\n'
        '[features]\nsomething = true\n\n[model_providers.mock]\nbase_url = "http://x/v1"\n'
    )
    (codex_home / "config.toml").write_text(user_toml)
    (codex_home / "hooks.json").write_text(json.dumps({"hooks": {"Stop": [USER_HOOK]}}))
    agent = _agent(tmp_path, "codex", CODEX_HOME=str(codex_home))
    profile = CodexProfile()
    spec = profile.prepare(agent, tmp_path / "state", resume=True)
    profile.prepare(agent, tmp_path / "state", resume=True)
    text = (codex_home / "config.toml").read_text()
    doc = tomllib.loads(text)
    assert text.startswith("# my settings")
    assert doc["model"] == "mock-model" and doc["check_for_update_on_startup"] is True
    assert doc["features"] == {"something": True, "daemon_auto_start": False}
    assert doc["model_providers"]["mock"]["base_url"] == "http://x/v1"
    assert doc["projects"][str(spec.cwd)]["trust_level"] == "trusted"
    user_hooks = {"hooks": {"Stop": [USER_HOOK]}}
    assert json.loads((codex_home / "hooks.json").read_text()) == user_hooks  # not touched
    assert "--dangerously-bypass-hook-trust" in spec.argv
    assert spec.env["CODEX_HOME"] == str(codex_home)
    assert not (tmp_path / "home" / ".codex").exists()


def _codex_hook_overrides(argv: list[str]) -> dict[str, Any]:
    """The ``-c hooks.<Event>=…`` overrides of a Codex argv, parsed as Codex parses them."""
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-c"]
    doc = tomllib.loads("\n".join(v for v in values if v.startswith("hooks.")))
    hooks: dict[str, Any] = doc["hooks"]
    return hooks


def test_codex_hooks_go_on_the_command_line_per_agent(tmp_path: Path) -> None:
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    old_relay = {"hooks": [{"type": "command", "command": "x >> /o # agentbridge.hook_relay"}]}
    (codex_home / "hooks.json").write_text(
        json.dumps({"hooks": {"Stop": [USER_HOOK, old_relay], "UserPromptSubmit": [old_relay]}})
    )
    profile = CodexProfile()
    one = _agent(tmp_path, "codex", CODEX_HOME=str(codex_home))
    two = dataclasses.replace(one, name="b", cwd=tmp_path / "work2")
    spec1 = profile.prepare(one, tmp_path / "s1", resume=True)
    spec2 = profile.prepare(two, tmp_path / "s2", resume=True)
    # the older agentbridge's entries are gone from the shared hooks.json, the user's stay
    assert json.loads((codex_home / "hooks.json").read_text()) == {"hooks": {"Stop": [USER_HOOK]}}
    for spec in (spec1, spec2):
        hooks = _codex_hook_overrides(spec.argv)
        (ask,) = hooks.pop("PermissionRequest")  # blocking, answers: agentbridge.permission_hook
        assert str(spec.hook_events.parent) in ask["hooks"][0]["command"]
        assert sorted(hooks) == ["Stop"]
        for groups in hooks.values():
            assert groups == [
                {"hooks": [{"type": "command", "command": hook_command(spec.hook_events)}]}
            ]
    assert spec1.hook_events != spec2.hook_events
    assert spec1.argv.index("--dangerously-bypass-hook-trust") < spec1.argv.index("-c")
    (codex_home / "hooks.json").write_text(json.dumps({"hooks": {"Stop": [old_relay]}}))
    profile.prepare(one, tmp_path / "s1", resume=True)
    assert not (codex_home / "hooks.json").exists()  # it held only ours


def test_toml_upsert_refuses_to_break_a_file() -> None:
    text = "[projects.'/w']\ntrust_level = \"untrusted\"\n"
    with pytest.raises(ValueError):
        toml_upsert(text, ("projects", "/w"), "trust_level", "trusted")


def _feed_all(parser: CodexTranscriptParser, path: Path) -> list[tuple[str, int | None, str]]:
    out = []
    for line in path.read_text().splitlines():
        for ev in parser.feed(line):
            out.append((ev.kind.value, ev.envelope.message_id if ev.envelope else None, ev.text))
    return out


def test_codex_parser_on_real_lines() -> None:
    parser = CodexTranscriptParser()
    events = _feed_all(parser, DATA / "codex" / "multi_turn_errors_resume.jsonl")
    ends = [e for e in events if e[0] in ("turn_completed", "api_error", "turn_aborted")]
    assert ends[0][:2] == ("api_error", 1) and "429" in ends[0][2]
    completed = [e for e in events if e[0] == "turn_completed"]
    assert [e[1] for e in completed] == [2, 9, 11]
    prompt_9 = next(e for e in events if e[0] == "prompt_recorded" and e[1] == 9)
    assert completed[1][2] == answer_for(prompt_9[2])  # the mock's exact answer to that prompt
    assert parser.corrupt_lines == 0
    assert parser.session_id == "01a2088c-4c04-7213-a631-90e433b8d154"


def test_codex_parser_counts_corrupt_lines() -> None:
    parser = CodexTranscriptParser()
    assert parser.feed("{not json") == [] and parser.feed("[1, 2]") == []
    assert parser.feed('{"type": "event_msg", "payload": {"type": "task_complete"}}')
    assert parser.corrupt_lines == 2


def test_claude_parser_on_real_lines() -> None:
    claude = pytest.importorskip("agentbridge.runtimes.claude.transcript")
    parser = claude.ClaudeTranscriptParser()
    events = []
    for line in (DATA / "claude" / "multi_turn_errors_resume.jsonl").read_text().splitlines():
        events += parser.feed(line)
    first_end = next(e for e in events if e.kind is AgentEventKind.TURN_COMPLETED)
    assert first_end.envelope is not None and first_end.envelope.message_id == 1
    assert first_end.text == answer_for(
        "[agentbridge message=1 attempt=1 channel=local sender=alice]\nhello there"
    )
    errors = [e for e in events if e.kind is AgentEventKind.API_ERROR]
    assert errors and errors[0].envelope is not None
    assert parser.corrupt_lines == 0


def test_claude_parser_first_flush_out_of_order() -> None:
    """Captured from the real CLI: the first flush wrote the assistant line before the user line
    (other runs: the turn end too), so the turn's answer must be found via ``parentUuid``."""
    from agentbridge.runtimes.claude.transcript import ClaudeTranscriptParser

    parser = ClaudeTranscriptParser()
    events = []
    for line in (DATA / "claude" / "first_flush_out_of_order.jsonl").read_text().splitlines():
        events += parser.feed(line)
    first_end = next(e for e in events if e.kind is AgentEventKind.TURN_COMPLETED)
    assert first_end.envelope is not None and first_end.envelope.message_id == 1
    assert first_end.text == answer_for(
        "[agentbridge message=1 attempt=1 channel=local sender=alice]\nhello, what is 2 + 2?"
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("claude_ready.txt", ScreenKind.READY),
        ("claude_busy_retrying.txt", ScreenKind.BUSY),
        ("claude_error_429.txt", ScreenKind.RATE_LIMITED),
        ("claude_error_529.txt", ScreenKind.API_ERROR),
        ("claude_error_500.txt", ScreenKind.API_ERROR),
        ("codex_busy.txt", ScreenKind.BUSY),
        ("codex_error_429.txt", ScreenKind.RATE_LIMITED),
        ("codex_api_error_500.txt", ScreenKind.API_ERROR),
        ("claude_permission.txt", ScreenKind.PERMISSION_PROMPT),  # Bash tool, no skip flag
        ("codex_permission.txt", ScreenKind.PERMISSION_PROMPT),  # on-request, escalation
    ],
)
def test_screen_states_of_real_screens(name: str, kind: ScreenKind) -> None:
    profile = ClaudeCodeProfile() if name.startswith("claude") else CodexProfile()
    state = profile.screen_state((DATA / "screens" / name).read_text())
    assert state.kind is kind
    # the box is there and empty (placeholder ignored); a dialog has no box
    assert state.input_text == ("" if kind is not ScreenKind.PERMISSION_PROMPT else None)


def test_claude_screen_limit_resets_and_prompt_echo_is_not_an_error() -> None:
    border = "─" * 40
    limit = f"❯ hi\n  ⎿  You've hit your limit · resets 3:45pm\n{border}\n❯\u00a0\n{border}\n"
    state = ClaudeCodeProfile().screen_state(limit)
    assert state.kind is ScreenKind.RATE_LIMITED and state.reset_at == "3:45pm"
    forged = "❯ API Error: 500 and You've hit your limit · resets 1pm\n● ok\n"
    forged += f"{border}\n❯\u00a0x\n{border}\n"
    state = ClaudeCodeProfile().screen_state(forged)
    assert state.kind is ScreenKind.READY and state.input_text == "x"
    dialog = f"{border}\nBash command\n  rm x\nDo you want to proceed?\n❯ 1. Yes\n  2. No\n"
    assert ClaudeCodeProfile().screen_state(dialog).kind is ScreenKind.PERMISSION_PROMPT


def test_generic_profile_is_screen_only(tmp_path: Path) -> None:
    agent = AgentConfig(name="g", runtime="generic", command=["bash"], ready_pattern=r"\$ $")
    profile = GenericProfile()
    spec = profile.prepare(agent, tmp_path, resume=True)
    assert spec.argv == ["bash"] and profile.transcript_path(spec, None) is None
    assert spec.ready_pattern == r"\$ $"
    assert profile.screen_state("hello\nuser@h:~$ ", spec).kind is ScreenKind.READY
    # capture-pane drops the trailing space the pattern was written with
    assert profile.screen_state("hello\nuser@h:~$", spec).kind is ScreenKind.READY
    assert profile.screen_state("working...", spec).kind is ScreenKind.BUSY
    assert profile.screen_state("", spec).kind is ScreenKind.STARTING
    with pytest.raises(ValueError, match="ready_pattern"):
        profile.prepare(dataclasses.replace(agent, ready_pattern="(["), tmp_path, resume=True)


def test_generic_profile_honours_each_agents_pattern(tmp_path: Path) -> None:
    """One shared instance, two agents: each screen is read with its own agent's pattern."""
    profile = GenericProfile()
    calc = AgentConfig(name="calc", runtime="generic", command=["sh"], ready_pattern=r"^calc> $")
    py = AgentConfig(name="py", runtime="generic", command=["sh"], ready_pattern=r"^>>> $")
    spec_calc = profile.prepare(calc, tmp_path / "c", resume=True)
    spec_py = profile.prepare(py, tmp_path / "p", resume=True)  # prepared last
    calc_ready, py_ready = "1 + 1\n2\ncalc> ", "print(1)\n1\n>>> "
    assert profile.screen_state(calc_ready, spec_calc).kind is ScreenKind.READY
    assert profile.screen_state(calc_ready, spec_py).kind is ScreenKind.BUSY
    assert profile.screen_state(py_ready, spec_py).kind is ScreenKind.READY
    assert profile.screen_state(py_ready, spec_calc).kind is ScreenKind.BUSY
    # without a spec: READY when any prepared agent's pattern matches (no longer the last one's)
    assert profile.screen_state(calc_ready).kind is ScreenKind.READY
    assert profile.screen_state("computing...").kind is ScreenKind.BUSY
    default = GenericProfile().prepare(
        dataclasses.replace(calc, ready_pattern=None), tmp_path, True
    )
    assert default.ready_pattern == DEFAULT_READY
