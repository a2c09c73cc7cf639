"""The offline scripted model: a TEST DOUBLE that plays a plan file instead of calling an LLM.

It is a real Strands `Model`: it streams the same ConverseStream events a provider
streams, so the agent loop, tools, session storage and server around it all run for
real. Each rule of the plan is a regular expression matched against the latest user
prompt, and a list of steps played one per model call: tool calls, then a final text.
Texts may quote what the model really observed:

    {history}      messages of history it was given before this prompt
    {last_result}  what the last tool returned (first 400 characters)
    {workspace}    the workspace path (also replaced inside tool inputs)
    {prompt}       the prompt itself

A step {"fail": MESSAGE} raises instead, to rehearse a provider failure.

Every final text starts with "[offline scripted model]" so nobody mistakes it for an LLM.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strands.models.model import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

BANNER = "[offline scripted model]"


class PlanError(ValueError):
    """The plan file is missing or malformed."""


class ScriptedFailure(RuntimeError):
    """A planned model failure (a {"fail": ...} step)."""


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    steps: list[dict[str, Any]]


def load_plan(path: Path) -> list[Rule]:
    """Read and check a plan file: {"rules": [{"match": REGEX, "steps": [{"tool", "input"} | {"text"}]}]}."""
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


def _turn_start(messages: Messages) -> int:
    """Index of the latest user message that carries a prompt (not only tool results)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] == "user" and any("text" in b for b in m["content"]):
            return i
    return len(messages)


class ScriptedModel(Model):
    """Plays a plan file deterministically. A test double: it never calls an LLM."""

    def __init__(self, plan_path: Path, workspace: Path) -> None:
        self.plan_path = plan_path
        self.rules = load_plan(plan_path)
        self.config: dict[str, Any] = {"model_id": "scripted", "workspace": str(workspace)}

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    def structured_output(
        self, output_model: Any, prompt: Messages, system_prompt: str | None = None, **kw: Any
    ):
        raise TypeError("the offline scripted model cannot produce structured output; use a real provider")

    async def stream(
        self,
        messages: Messages,
        tool_specs: list[ToolSpec] | None = None,
        system_prompt: str | None = None,
        **kwargs: Any,  # the agent passes more keywords than the abstract signature names
    ) -> AsyncIterable[StreamEvent]:
        start = _turn_start(messages)
        prompt = _text_of(messages[start]["content"][-1]) if start < len(messages) else ""
        rule = next((r for r in self.rules if r.pattern.search(prompt)), None)
        if rule is None:
            step: dict[str, Any] = {"text": f"{BANNER} No rule of {self.plan_path.name} matches this prompt."}
        else:
            played = sum(1 for m in messages[start:] if m["role"] == "assistant")
            step = rule.steps[min(played, len(rule.steps) - 1)]
        facts = {
            "{history}": str(start),
            "{last_result}": self._last_result(messages[start:])[:400],
            "{workspace}": self.config["workspace"],
            "{prompt}": prompt,
        }
        async for event in self._play(step, facts):
            yield event

    @staticmethod
    def _last_result(turn: Messages) -> str:
        for m in reversed(turn):
            for block in m["content"]:
                if "toolResult" in block:
                    return _text_of(block)
        return "(no tool ran)"

    @staticmethod
    async def _play(step: dict[str, Any], facts: dict[str, str]) -> AsyncGenerator[StreamEvent, None]:
        def fill(text: str) -> str:
            for key, value in facts.items():
                text = text.replace(key, value)
            return text

        if "fail" in step:
            raise ScriptedFailure(step["fail"])
        yield {"messageStart": {"role": "assistant"}}
        if "tool" in step:
            tool_input = json.loads(fill(json.dumps(step.get("input", {}))))
            # Tool-use ids must be unique across the whole conversation for real providers.
            start = {"toolUse": {"toolUseId": f"scripted-{uuid.uuid4().hex[:12]}", "name": step["tool"]}}
            yield {"contentBlockStart": {"start": start}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(tool_input)}}}}
            yield {"contentBlockStop": {}}
            stop = "tool_use"
        else:
            text = fill(step["text"])
            text = text if text.startswith(BANNER) else f"{BANNER} {text}"
            yield {"contentBlockStart": {"start": {}}}
            for piece in re.findall(r"\S*\s*", text):  # word by word, as a provider streams deltas
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
