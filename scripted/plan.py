"""Plan files and the player: which step a model call gets, and that step as ConverseStream events.

A plan is {"rules": [{"match": REGEX, "steps": [...]}]}. The first rule whose regex is found
in the latest user prompt is played, one step per model call: {"tool": NAME, "input": {...}}
calls a tool (names come from the plan, never from here), {"text": ...} ends the turn, and
{"fail": MESSAGE} raises ScriptedFailure to rehearse a provider failure. Texts may quote what
the model really observed:

    {history}      messages of history it was given before this prompt
    {last_result}  what the last tool returned (first 400 characters)
    {workspace}    the workspace path (also replaced inside tool inputs)
    {prompt}       the prompt itself

Every final text starts with BANNER so nobody mistakes it for an LLM.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BANNER = "[offline scripted model]"
Message = dict[str, Any]  # Converse shape: {"role": ..., "content": [block, ...]}


class PlanError(ValueError):
    """The plan file is missing or malformed."""


class ScriptedFailure(RuntimeError):
    """A planned model failure (a {"fail": ...} step)."""


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    steps: list[dict[str, Any]]


@dataclass(frozen=True)
class ToolCall:
    """A step that asks for one tool call."""

    name: str
    input: dict[str, Any]
    tool_use_id: str


@dataclass(frozen=True)
class Reply:
    """A step that ends the turn with text."""

    text: str


def load_plan(path: Path) -> list[Rule]:
    """Read and check a plan file; PlanError with one line saying what is wrong."""
    try:
        raw = json.loads(path.read_text())
        rules = [
            Rule(re.compile(r["match"], re.IGNORECASE | re.DOTALL), list(r["steps"])) for r in raw["rules"]
        ]
    except FileNotFoundError as e:
        raise PlanError(f"SCRIPTED_PLAN {path} does not exist; point SCRIPTED_PLAN at a plan file") from e
    except (json.JSONDecodeError, KeyError, TypeError, re.error) as e:
        raise PlanError(f"SCRIPTED_PLAN {path} is not a valid plan ({e}); see demo/plan.json") from e
    for rule in rules:
        if not rule.steps or not ({"text", "fail"} & rule.steps[-1].keys()):
            raise PlanError(f"SCRIPTED_PLAN {path}: rule {rule.pattern.pattern!r} must end with a text step")
    return rules


def _text_of(block: dict[str, Any]) -> str:
    if "text" in block:
        return block["text"]
    result = block.get("toolResult")
    if result:
        return "".join(c.get("text") or json.dumps(c.get("json")) for c in result.get("content", []))
    return ""


def _turn_start(messages: Sequence[Message]) -> int:
    """Index of the latest user message that carries a prompt (not only tool results)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] == "user" and any("text" in b for b in m["content"]):
            return i
    return len(messages)


def _last_result(turn: Sequence[Message]) -> str:
    for m in reversed(turn):
        for block in m["content"]:
            if "toolResult" in block:
                return _text_of(block)
    return "(no tool ran)"


def next_step(
    rules: list[Rule], plan_name: str, messages: Sequence[Message], workspace: str
) -> ToolCall | Reply:
    """The step this model call plays, its placeholders filled from what the messages show."""
    start = _turn_start(messages)
    texts = [b for b in messages[start]["content"] if "text" in b] if start < len(messages) else []
    prompt = texts[-1]["text"] if texts else ""  # the prompt is the message's last text block
    rule = next((r for r in rules if r.pattern.search(prompt)), None)
    if rule is None:
        return Reply(f"{BANNER} No rule of {plan_name} matches this prompt.")
    played = sum(1 for m in messages[start:] if m["role"] == "assistant")
    step = rule.steps[min(played, len(rule.steps) - 1)]
    facts = {
        "{history}": str(start),
        "{last_result}": _last_result(messages[start:])[:400],
        "{workspace}": workspace,
        "{prompt}": prompt,
    }

    def fill(text: str) -> str:
        for key, value in facts.items():
            text = text.replace(key, value)
        return text

    if "fail" in step:
        raise ScriptedFailure(step["fail"])
    if "tool" in step:
        # Tool-use ids must be unique across the whole conversation for real providers.
        tool_input = json.loads(fill(json.dumps(step.get("input", {}))))
        return ToolCall(step["tool"], tool_input, f"scripted-{uuid.uuid4().hex[:12]}")
    text = fill(step["text"])
    return Reply(text if text.startswith(BANNER) else f"{BANNER} {text}")


def stream_events(step: ToolCall | Reply) -> Iterator[dict[str, Any]]:
    """The step as ConverseStream events, in the shape Strands' StreamEvent takes (no block index)."""
    yield {"messageStart": {"role": "assistant"}}
    if isinstance(step, ToolCall):
        start = {"toolUse": {"toolUseId": step.tool_use_id, "name": step.name}}
        yield {"contentBlockStart": {"start": start}}
        yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(step.input)}}}}
        yield {"contentBlockStop": {}}
        stop = "tool_use"
    else:
        yield {"contentBlockStart": {"start": {}}}
        for piece in re.findall(r"\S*\s*", step.text):  # word by word, as a provider streams deltas
            if piece:
                yield {"contentBlockDelta": {"delta": {"text": piece}}}
        yield {"contentBlockStop": {}}
        stop = "end_turn"
    yield {"messageStop": {"stopReason": stop}}
    yield {
        "metadata": {
            "usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0},
            "metrics": {"latencyMs": 0},
        }
    }
