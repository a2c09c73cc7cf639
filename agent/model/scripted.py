"""The offline scripted model as a Strands Model: a TEST DOUBLE that plays a plan file instead of an LLM.

It streams the same ConverseStream events a provider streams, so the agent loop, tools,
session storage and server around it all run for real. The plan format and the player live
in `scripted.plan`, shared with agentcore_local's bedrock-runtime, which plays the same plans
behind the production BedrockModel path.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from strands.models.model import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

from scripted.plan import BANNER, PlanError, Rule, ScriptedFailure, load_plan, next_step, stream_events

__all__ = ["BANNER", "PlanError", "Rule", "ScriptedFailure", "ScriptedModel", "load_plan"]


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
        step = next_step(self.rules, self.plan_path.name, messages, self.config["workspace"])
        for event in stream_events(step):
            yield event  # type: ignore[misc]
