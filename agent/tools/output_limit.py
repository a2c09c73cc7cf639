"""Strands hooks the service adds to every agent."""

from __future__ import annotations

from typing import Any

from strands.hooks import AfterToolCallEvent, HookProvider, HookRegistry


class OutputLimit(HookProvider):
    """Cap what one tool call returns before it reaches the history and the model.

    A `cat` of a large file or a noisy `npm install` would otherwise be stored in
    session storage and resent to the model on every later turn.
    """

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(AfterToolCallEvent, self.cap)

    def cap(self, event: AfterToolCallEvent) -> None:
        result = event.result
        blocks = result.get("content", [])
        if not any(len(b.get("text", "")) > self.max_chars for b in blocks):
            return
        capped = []
        for block in blocks:
            text = block.get("text")
            if text is not None and len(text) > self.max_chars:
                omitted = len(text) - self.max_chars
                block = {"text": text[: self.max_chars] + f"\n[... {omitted} more characters not shown]"}
            capped.append(block)
        event.result = {**result, "content": capped}
