"""Unit tests of the agent service's pure parts: wire contract, workspace guard, history repair, models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from strands import Agent
from strands.session.file_session_manager import FileSessionManager

from agent.conversation import history, protocol
from agent.model import providers
from agent.model.providers import ModelConfigError, build_model
from agent.model.scripted import BANNER, PlanError, ScriptedModel, load_plan
from agent.service.settings import DEFAULT_MODEL_ID, Settings
from agent.tools.snapshot import snapshot
from agent.tools.toolset import make_tools
from agent.tools.workspace import Workspace
from tests.support import REPO


def test_settings_come_from_the_environment_with_spec_defaults():
    s = Settings.from_env({})
    assert (s.workspace, s.port, s.host, s.model_provider) == (
        Path("/mnt/workspace"),
        8080,
        "127.0.0.1",
        "bedrock",
    )
    assert s.model_id == DEFAULT_MODEL_ID
    s = Settings.from_env(
        {"PORT": "9000", "DOCKER_CONTAINER": "1", "WORKSPACE_DIR": "/w", "MODEL_PROVIDER": "Scripted"}
    )
    assert (s.port, s.host, s.workspace, s.model_provider) == (9000, "0.0.0.0", Path("/w"), "scripted")
    assert s.sessions_dir == Path("/w/.sessions")


def test_settings_never_show_the_api_key():
    assert "sk-secret" not in repr(Settings.from_env({"OPENAI_API_KEY": "sk-secret"}))


def test_runtime_session_ids_that_break_file_names_become_a_stable_digest():
    assert protocol.default_conversation_id(None) == "default"
    assert protocol.default_conversation_id("a" * 40) == "a" * 40
    odd = "x" * 200  # valid for AgentCore (up to 256) but too long for a conversation id
    assert protocol.default_conversation_id(odd) == protocol.default_conversation_id(odd)
    assert protocol.CONVERSATION_ID.fullmatch(protocol.default_conversation_id(odd))


def test_prompt_limit_is_413_and_other_problems_are_400():
    with pytest.raises(protocol.BadRequest) as e:
        protocol.parse_request({"prompt": "x" * 11}, None, max_prompt_chars=10)
    assert e.value.status == 413
    with pytest.raises(protocol.BadRequest) as e:
        protocol.parse_request({"prompt": "ok", "conversation_id": "a b"}, None, max_prompt_chars=10)
    assert e.value.status == 400


def test_snapshot_lists_the_top_level_without_the_history(tmp_path: Path):
    (tmp_path / ".sessions").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "a.txt").write_text("x")
    snap = snapshot(tmp_path)
    assert snap.entries == ["a.txt", "src/"] and snap.restored
    assert "a.txt, src/" in snap.describe()
    assert not snapshot(tmp_path / "empty").restored


def _conversation(storage: Path, cid: str, model) -> tuple[Agent, FileSessionManager]:
    sessions = FileSessionManager(session_id=cid, storage_dir=str(storage))
    return Agent(model=model, session_manager=sessions, callback_handler=None), sessions


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rules": [{"match": ".", "steps": [{"text": "seen {history}"}]}]}))
    return path


def test_damage_is_the_bad_message_and_everything_after_it(tmp_path: Path, plan: Path):
    model = ScriptedModel(plan, tmp_path)
    agent, _ = _conversation(tmp_path, "c", model)
    agent("one")
    agent("two")
    root = history.session_dir(tmp_path, "c")
    messages = root / "agents" / "agent_default" / "messages"
    (messages / "message_1.json").write_text("{")
    (messages / "message_backup.json").write_text("{}")
    damaged = {p.name for p in history.find_damage(root)}
    assert damaged == {"message_1.json", "message_2.json", "message_3.json", "message_backup.json"}


def test_open_with_quarantine_keeps_the_clean_prefix(tmp_path: Path, plan: Path):
    model = ScriptedModel(plan, tmp_path)
    agent, _ = _conversation(tmp_path, "c", model)
    agent("one")
    agent("two")
    messages = history.session_dir(tmp_path, "c") / "agents" / "agent_default" / "messages"
    (messages / "message_3.json").write_text(json.dumps({"not": "a message"}))
    (agent, _), moved = history.open_with_quarantine(
        tmp_path, "c", lambda: _conversation(tmp_path, "c", model)
    )
    assert moved == ["agents/agent_default/messages/message_3.json"]
    assert [m["role"] for m in agent.messages] == ["user", "assistant", "user"]


def test_corrupt_session_file_is_replaced_and_history_kept(tmp_path: Path, plan: Path):
    model = ScriptedModel(plan, tmp_path)
    agent, _ = _conversation(tmp_path, "c", model)
    agent("one")
    (history.session_dir(tmp_path, "c") / "session.json").write_text("garbage")
    (agent, _), moved = history.open_with_quarantine(
        tmp_path, "c", lambda: _conversation(tmp_path, "c", model)
    )
    assert moved == ["session.json"] and len(agent.messages) == 2


def test_interrupted_tool_call_is_closed_and_persisted(tmp_path: Path, plan: Path):
    model = ScriptedModel(plan, tmp_path)
    agent, sessions = _conversation(tmp_path, "c", model)
    agent.messages.append({"role": "user", "content": [{"text": "go"}]})
    sessions.append_message(agent.messages[-1], agent)
    tool_use = {"toolUse": {"toolUseId": "t1", "name": "shell", "input": {}}}
    agent.messages.append({"role": "assistant", "content": [tool_use]})
    sessions.append_message(agent.messages[-1], agent)
    assert history.close_interrupted_turn(agent, sessions) is True
    assert history.close_interrupted_turn(agent, sessions) is False  # now at a turn boundary
    restored, _ = _conversation(tmp_path, "c", model)
    assert [m["role"] for m in restored.messages] == ["user", "assistant", "user", "assistant"]
    assert restored.messages[2]["content"][0]["toolResult"]["status"] == "error"
    assert restored.messages[3]["content"][0]["text"] == history.INTERRUPTED_NOTE


def test_scripted_model_plays_tool_steps_then_quotes_what_it_saw(tmp_path: Path):
    path = tmp_path / "plan.json"
    rule = {
        "match": "^list",
        "steps": [
            {"tool": "shell", "input": {"command": "echo in {workspace}"}},
            {"text": "got {last_result}"},
        ],
    }
    path.write_text(json.dumps({"rules": [rule]}))
    tools = make_tools(Workspace(tmp_path), shell_timeout=10, output_chars=1000, env=os.environ)
    agent = Agent(model=ScriptedModel(path, tmp_path), tools=tools, callback_handler=None)
    answer = str(agent("list please")).strip()
    assert answer.startswith(BANNER)
    assert f"in {tmp_path}" in answer  # the tool really ran and its output was quoted


def test_scripted_model_says_when_no_rule_matches(tmp_path: Path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rules": [{"match": "^never$", "steps": [{"text": "x"}]}]}))
    agent = Agent(model=ScriptedModel(path, tmp_path), callback_handler=None)
    assert "No rule of plan.json matches" in str(agent("hello"))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "does not exist"),
        ("{", "is not a valid plan"),
        ('{"rules": [{"match": "(", "steps": [{"text": "x"}]}]}', "is not a valid plan"),
        ('{"rules": [{"match": "a", "steps": [{"tool": "shell"}]}]}', "must end with a text step"),
    ],
)
def test_bad_plan_files_get_one_clear_line(tmp_path: Path, content: str | None, says: str):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PlanError, match=says):
        load_plan(path)


def test_the_shipped_demo_plan_is_valid():
    rules = load_plan(REPO / "demo" / "plan.json")
    assert rules[0].pattern.search("Add POST /echo, check the workspace first")
    assert rules[1].pattern.search("Create a Node.js REST API with GET /health")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MODEL_PROVIDER": "gpt"}, "is not one of bedrock, scripted, openai, ollama"),
        ({"MODEL_PROVIDER": "openai"}, "needs OPENAI_BASE_URL"),
        (
            {"MODEL_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:1"},
            "pip install 'strands-agents[openai]'",
        ),
        ({"MODEL_PROVIDER": "ollama"}, "pip install 'strands-agents[ollama]'"),
    ],
)
def test_unusable_providers_say_what_to_install_or_set(env: dict[str, str], says: str):
    with pytest.raises(ModelConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        build_model(Settings.from_env(env))


def test_bedrock_without_credentials_says_what_to_set(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    with pytest.raises(ModelConfigError, match="found no AWS credentials"):
        build_model(Settings.from_env({"MODEL_PROVIDER": "bedrock"}))


def test_bedrock_with_credentials_builds_the_configured_model():
    model = build_model(Settings.from_env({"MODEL_PROVIDER": "bedrock", "AWS_REGION": "us-west-2"}))
    assert model.get_config()["model_id"] == DEFAULT_MODEL_ID


@pytest.fixture
def extra_provider(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """A provider added the documented way: one entry in the registry. It records what it was built with."""
    built: list[Settings] = []

    def build(settings: Settings) -> ScriptedModel:
        built.append(settings)
        return ScriptedModel(settings.scripted_plan, settings.workspace)

    extra = providers.Provider("extra", build, ("EXTRA_URL",))
    monkeypatch.setitem(providers.PROVIDERS, "extra", extra)
    return built


def test_a_provider_added_to_the_registry_is_chosen_and_reads_its_declared_variables(extra_provider):
    settings = Settings.from_env({"MODEL_PROVIDER": "extra", "EXTRA_URL": "http://x", "OTHER": "no"})
    build_model(settings)
    assert extra_provider == [settings]
    assert settings.provider_env == {"EXTRA_URL": "http://x"}  # only what some provider declares
    with pytest.raises(ModelConfigError, match="not one of bedrock, scripted, openai, ollama, extra"):
        build_model(Settings.from_env({"MODEL_PROVIDER": "nope"}))


def test_the_local_runtime_passes_every_providers_variables_to_the_agent(
    extra_provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`serve` reads the registry: a new provider's variables reach the sandboxed agent with no other edit."""
    import agentcore_local.server
    from agentcore_local.__main__ import main as serve_main

    served: list = []
    monkeypatch.setattr(agentcore_local.server, "serve", lambda settings, *_: served.append(settings))
    declared = {name: f"value-of-{name}" for name in providers.model_variables()}
    for name, value in {**declared, "UNRELATED_SECRET": "x"}.items():
        monkeypatch.setenv(name, value)
    # --model-backend none: the bogus SCRIPTED_PLAN above is the agent's business here, not a plan to play.
    assert serve_main(["serve", "--state-dir", str(tmp_path), "--model-backend", "none"]) == 0
    (settings,) = served
    assert "EXTRA_URL" in declared and "OPENAI_API_KEY" in declared and "MODEL_PROVIDER" in declared
    assert declared.items() <= dict(settings.agent_env).items()
    assert "UNRELATED_SECRET" not in settings.agent_env


def test_importing_the_service_touches_no_workspace(tmp_path: Path):
    """AgentCore mounts session storage after the module is imported: no workspace I/O at import time."""
    import os
    import subprocess
    import sys

    workspace = tmp_path / "not-mounted-yet"
    env = {**os.environ, "WORKSPACE_DIR": str(workspace), "MODEL_PROVIDER": "scripted"}
    repo = REPO
    subprocess.run([sys.executable, "-c", "import coding_agent"], cwd=repo, env=env, check=True)
    assert not workspace.exists()


def test_health_says_when_the_turn_loop_stops_running_callbacks():
    import asyncio
    import threading
    import time

    from agent.service.health import Health

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    now = [0.0]  # the clock health reads, moved by hand
    health = Health(lambda after: [], stall_after=0.1, clock=lambda: now[0])
    health.watch(loop)
    assert health.problem() is None  # posts a heartbeat, which runs at once
    deadline = time.monotonic() + 5
    while health.heartbeat_pending:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait)  # a blocking call wedges the loop
    assert health.problem() is None  # posts a heartbeat behind the blocking call
    now[0] += 0.05
    assert health.problem() is None  # not stalled for long enough yet
    now[0] += 0.2
    assert "has not run for" in (health.problem() or "")
    release.set()
    while health.problem() is not None:
        assert time.monotonic() < deadline, "the loop ran again but health did not recover"
        time.sleep(0.01)
    loop.call_soon_threadsafe(loop.stop)


def test_health_names_a_restore_that_takes_too_long():
    from agent.service.health import Health

    assert "restoring conversation 'c'" in (Health(lambda after: ["c"], stall_after=1).problem() or "")


def _stepped(storage: Path, cid: str, model, window: int = 4, step: int = 4):
    from agent.conversation.window import SteppedWindowConversationManager

    sessions = FileSessionManager(session_id=cid, storage_dir=str(storage))
    manager = SteppedWindowConversationManager(window_size=window, step=step)
    agent = Agent(model=model, session_manager=sessions, conversation_manager=manager, callback_handler=None)
    return agent, manager


def test_stepped_window_trims_only_past_window_plus_step_and_back_to_the_window(tmp_path: Path, plan: Path):
    agent, manager = _stepped(tmp_path, "c", ScriptedModel(plan, tmp_path))
    agent_json = history.session_dir(tmp_path, "c") / "agents" / "agent_default" / "agent.json"
    held, writes, last = [], 0, agent_json.read_text() if agent_json.exists() else ""
    for i in range(8):
        agent(f"turn {i}")
        held.append(len(agent.messages))
        writes += agent_json.read_text() != last
        last = agent_json.read_text()
    assert held == [2, 4, 6, 8, 4, 6, 8, 4]  # grows to window + step (8), then cut back to the window (4)
    assert manager.removed_message_count == 12
    assert writes <= 3  # agent.json changed at the two trims (and once at the start), not on every turn
    restored, _ = _stepped(tmp_path, "c", ScriptedModel(plan, tmp_path))
    assert restored.messages[0]["content"][0]["text"] == "turn 6"


def test_a_history_written_by_the_plain_sliding_window_restores_into_the_stepped_one(
    tmp_path: Path, plan: Path
):
    model = ScriptedModel(plan, tmp_path)
    old, _ = _conversation(tmp_path, "c", model)  # Strands' default manager, as the service used before
    old.conversation_manager.window_size = 4
    for i in range(4):
        old(f"turn {i}")
    assert old.conversation_manager.removed_message_count == 4
    agent, manager = _stepped(tmp_path, "c", model)
    assert manager.removed_message_count == 4 and len(agent.messages) == 4
    agent("turn 4")
    restored, _ = _stepped(tmp_path, "c", model)
    assert [m["content"][0]["text"] for m in restored.messages][-2] == "turn 4"


def test_an_unknown_or_damaged_manager_state_resumes_from_what_it_says_or_from_the_start():
    from agent.conversation.window import SteppedWindowConversationManager

    manager = SteppedWindowConversationManager()
    manager.restore_from_session({"__name__": "SummarizingConversationManager", "removed_message_count": 7})
    assert manager.removed_message_count == 7
    manager.restore_from_session({"__name__": "Other", "removed_message_count": "x"})
    assert manager.removed_message_count == 0


def test_any_restore_failure_sets_the_whole_conversation_aside_and_starts_afresh(tmp_path: Path, plan: Path):
    model = ScriptedModel(plan, tmp_path)
    agent, _ = _conversation(tmp_path, "c", model)
    agent("one")
    calls = []

    def build():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("something in the history we did not foresee")
        return _conversation(tmp_path, "c", model)

    (agent, _), moved = history.open_with_quarantine(tmp_path, "c", build)
    assert moved == ["session_c"] and agent.messages == []
    kept = list((tmp_path / ".quarantine").glob("c-*/session_c/agents/agent_default/messages/message_0.json"))
    assert kept, "the old conversation was not set aside"


def test_tool_environment_keeps_what_commands_need_and_drops_secrets():
    env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": "sk-x",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "s",
        "TOOL_ENV": "PROJECT_FLAG, ,MISSING",
        "PROJECT_FLAG": "on",
    }
    settings = Settings.from_env(env)
    assert dict(settings.tool_env) == {
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PATH": "/usr/bin",
        "PROJECT_FLAG": "on",
    }
    assert "sk-x" not in repr(settings)
