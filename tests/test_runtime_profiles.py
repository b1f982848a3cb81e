"""Runtime profiles: seeding merges (never clobbers), the env whitelist, parsers on real lines.

The transcripts and screens under ``tests/data`` were captured from the real Claude Code 2.1.197
and Codex 0.169.0 running against ``agentbridge.testing.mock_model``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from agentbridge.agent_events import AgentEventKind
from agentbridge.config import AgentConfig
from agentbridge.protocols import RuntimeProfile, ScreenKind
from agentbridge.runtimes import ClaudeCodeProfile, CodexProfile, DemoProfile, GenericProfile
from agentbridge.runtimes.claude_code import claude_project_dir_name
from agentbridge.runtimes.codex import toml_upsert
from agentbridge.testing.mock_model import answer_for
from agentbridge.transcript.codex import CodexTranscriptParser

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


def test_claude_seeding_merges_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude.json").write_text(json.dumps({"userID": "u1", "projects": {"/x": {"k": 1}}}))
    settings = {"model": "opus", "hooks": {"Stop": [USER_HOOK], "PreToolUse": [USER_HOOK]}}
    (home / ".claude" / "settings.json").write_text(json.dumps(settings))
    agent = _agent(tmp_path, "claude-code")
    profile = ClaudeCodeProfile()
    spec = profile.prepare(agent, tmp_path / "state", resume=True)
    again = profile.prepare(agent, tmp_path / "state", resume=True)
    assert again.session_id == spec.session_id
    assert spec.argv == ["claude", "--session-id", str(spec.session_id)]

    glob = json.loads((home / ".claude.json").read_text())
    assert glob["userID"] == "u1" and glob["projects"]["/x"] == {"k": 1}
    assert glob["hasCompletedOnboarding"] is True
    assert glob["projects"][str(spec.cwd)]["hasTrustDialogAccepted"] is True
    seeded = json.loads((home / ".claude" / "settings.json").read_text())
    assert seeded["model"] == "opus" and seeded["hooks"]["PreToolUse"] == [USER_HOOK]
    stop = seeded["hooks"]["Stop"]
    assert stop[0] == USER_HOOK and len(stop) == 2  # ours added once, after the user's
    for event in ("UserPromptSubmit", "Stop", "StopFailure"):
        ours = [g for g in seeded["hooks"][event] if "agentbridge.hook_relay" in json.dumps(g)]
        assert len(ours) == 1
        assert str(tmp_path / "state" / "hooks.jsonl") in json.dumps(ours)


def test_claude_honours_claude_config_dir(tmp_path: Path) -> None:
    custom = tmp_path / "cfg"
    agent = _agent(tmp_path, "claude-code", CLAUDE_CONFIG_DIR=str(custom))
    profile = ClaudeCodeProfile()
    spec = profile.prepare(agent, tmp_path / "state", resume=True)
    assert (custom / ".claude.json").exists() and (custom / "settings.json").exists()
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
    hooks = json.loads((codex_home / "hooks.json").read_text())["hooks"]
    assert hooks["Stop"][0] == USER_HOOK and len(hooks["Stop"]) == 2
    assert "--dangerously-bypass-hook-trust" in spec.argv
    assert spec.env["CODEX_HOME"] == str(codex_home)
    assert not (tmp_path / "home" / ".codex").exists()


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
    claude = pytest.importorskip("agentbridge.transcript.claude")
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


@pytest.mark.xfail(reason="ClaudeTranscriptParser reads in file order; Claude's first flush is not")
def test_claude_parser_first_flush_out_of_order() -> None:
    """Captured from the real CLI: the first flush wrote the assistant line before the user line
    (other runs: the turn end too), so the turn's answer must be found via ``parentUuid``."""
    from agentbridge.transcript.claude import ClaudeTranscriptParser

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
    assert profile.screen_state("hello\nuser@h:~$ ").kind is ScreenKind.READY
    assert profile.screen_state("working...").kind is ScreenKind.BUSY
