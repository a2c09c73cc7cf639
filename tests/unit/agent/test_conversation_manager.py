"""What the model sees of a long conversation: the stepped window keeps the newest whole turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from strands import Agent, tool
from strands.session.file_session_manager import FileSessionManager

from agent.conversation.window import WINDOW, SteppedWindowConversationManager, is_prompt, whole_turn_cut
from agent.model.scripted import ScriptedModel


@tool
def note(text: str) -> str:
    """Write nothing anywhere; answer what was noted (a tool the scripted model can call)."""
    return f"noted {text}"


class RecordingModel(ScriptedModel):
    """The scripted test double, also keeping how many messages every model call received."""

    def __init__(self, plan_path: Path, workspace: Path) -> None:
        super().__init__(plan_path, workspace)
        self.seen: list[int] = []

    async def stream(self, messages: Any, *args: Any, **kwargs: Any):  # type: ignore[override]
        self.seen.append(len(messages))
        async for event in super().stream(messages, *args, **kwargs):
            yield event


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """`tools N` prompts make N tool calls (2 messages each) before the answer; others answer at once."""
    rules = [
        {"match": f"^tools {n}$", "steps": [{"tool": "note", "input": {"text": str(i)}} for i in range(n)]}
        for n in (1, 3, 12)
    ]
    for rule in rules:
        rule["steps"].append({"text": "done"})
    rules.append({"match": ".", "steps": [{"text": "echo {prompt}"}]})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rules": rules}))
    return path


def _agent(storage: Path, model: ScriptedModel, window: int, step: int) -> Agent:
    return Agent(
        model=model,
        tools=[note],
        session_manager=FileSessionManager(session_id="c", storage_dir=str(storage)),
        conversation_manager=SteppedWindowConversationManager(window_size=window, step=step),
        callback_handler=None,
    )


def _prompt(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": "Workspace is empty."}, {"text": text}]}


def _tool_pair(i: int) -> list[dict[str, Any]]:
    use = {"toolUse": {"toolUseId": f"t{i}", "name": "note", "input": {}}}
    result = {"toolResult": {"toolUseId": f"t{i}", "content": [{"text": "ok"}]}}
    return [{"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]


def _turn(text: str, tools: int) -> list[dict[str, Any]]:
    pairs = [m for i in range(tools) for m in _tool_pair(i)]
    return [_prompt(text), *pairs, {"role": "assistant", "content": [{"text": "done"}]}]


def test_a_prompt_is_a_user_message_without_tool_results():
    assert is_prompt(_prompt("hi"))
    assert not is_prompt(_tool_pair(0)[1]) and not is_prompt(_tool_pair(0)[0])


def test_the_cut_keeps_the_newest_whole_turns_holding_at_least_the_window():
    messages = _turn("a", 0) + _turn("b", 3) + _turn("c", 0)  # 2 + 8 + 2 messages
    assert whole_turn_cut(messages, keep=4) == 2  # "c" alone holds 2 < 4: "b" stays whole with it
    assert whole_turn_cut(messages, keep=2) == 10  # "c" holds 2: enough
    assert whole_turn_cut(messages, keep=11) == 0  # only "a" onwards holds 11: nothing to drop
    assert whole_turn_cut(_turn("long", 20), keep=4) == 0  # one turn: never cut in half


def test_a_tool_heavy_conversation_always_opens_on_a_prompt_with_every_tool_call_answered(
    tmp_path: Path, plan: Path
):
    model = RecordingModel(plan, tmp_path)
    agent = _agent(tmp_path, model, window=6, step=4)
    for prompt in ["tools 3", "hi", "tools 1", "tools 3", "hi", "tools 3", "tools 1", "hi"]:
        agent(prompt)
        held = agent.messages
        assert is_prompt(held[0])
        assert len(held) >= 6 or agent.conversation_manager.removed_message_count == 0
        uses = {b["toolUse"]["toolUseId"] for m in held for b in m["content"] if "toolUse" in b}
        results = {b["toolResult"]["toolUseId"] for m in held for b in m["content"] if "toolResult" in b}
        assert uses == results
    assert agent.conversation_manager.removed_message_count > 0  # it did trim along the way


def test_one_turn_longer_than_the_window_stays_whole_until_newer_turns_fill_the_window(
    tmp_path: Path, plan: Path
):
    agent = _agent(tmp_path, RecordingModel(plan, tmp_path), window=6, step=4)
    agent("tools 12")  # 26 messages, far past window + step
    assert len(agent.messages) == 26 and agent.conversation_manager.removed_message_count == 0
    for i in range(3):
        agent(f"short {i}")
    prompts = [m["content"][-1]["text"] for m in agent.messages if is_prompt(m)]
    assert prompts == ["short 0", "short 1", "short 2"]  # three newer turns filled the window: it went


def test_after_a_restart_the_model_sees_the_window_not_the_whole_stored_history(tmp_path: Path, plan: Path):
    agent = _agent(tmp_path, RecordingModel(plan, tmp_path), window=WINDOW, step=10)
    for i in range(60):
        agent(f"turn {i}")
    stored = len(list((tmp_path / "session_c" / "agents" / "agent_default" / "messages").iterdir()))
    assert stored == 120  # nothing is deleted from storage
    model = RecordingModel(plan, tmp_path)
    restored = _agent(tmp_path, model, window=WINDOW, step=10)
    restored("one more")
    assert WINDOW + 1 <= model.seen[0] <= WINDOW + 10 + 1  # the kept window and the new prompt
    assert restored.messages[0]["content"][0]["text"].startswith("turn ")


def test_the_window_refuses_bounds_it_cannot_keep():
    with pytest.raises(ValueError, match="at least 1"):
        SteppedWindowConversationManager(step=0)
    with pytest.raises(ValueError, match="pin_first"):
        SteppedWindowConversationManager(pin_first=2)
