"""A sliding window that trims in steps, so a long conversation's warm turn stays as cheap as a short one's.

Strands' SlidingWindowConversationManager trims on every turn once the window is full. Each
trim moves `removed_message_count`, so FileSessionManager re-reads and rewrites agent.json on
every turn (several ms of a 10 ms turn, measured). This one lets the history grow to
`window_size + step` messages, then cuts it back to `window_size` in one go. So
agent.json changes once every `step / 2` two-message turns, not on every turn.

What the model sees: the most recent `window_size` to `window_size + step` messages, each
trim starting at a user message with no orphaned tool result, as the parent class does.
Stored history is never deleted: every message stays in session storage.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from strands.agent.conversation_manager import SlidingWindowConversationManager

if TYPE_CHECKING:
    from strands import Agent

logger = logging.getLogger(__name__)

WINDOW = 40  # Strands' default window: the least the model sees once a conversation is long
STEP = 20


class SteppedWindowConversationManager(SlidingWindowConversationManager):
    """Keep between `window_size` and `window_size + step` messages; trim only past the upper bound."""

    def __init__(self, window_size: int = WINDOW, step: int = STEP, **kwargs: Any) -> None:
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        super().__init__(window_size=window_size, **kwargs)
        self.step = step

    def apply_management(self, agent: Agent, **kwargs: Any) -> None:
        """After each invocation: trim back to the window only once the history is past window + step."""
        if len(agent.messages) > self.window_size + self.step:
            self.reduce_context(agent)

    def restore_from_session(self, state: dict[str, Any]) -> list | None:
        """Also restore a history an earlier manager wrote (Strands insists on the same class name).

        Every manager's `removed_message_count` is the index of the first stored message that
        was still in memory, so this window simply resumes from there.
        """
        name = state.get("__name__")
        if name != type(self).__name__:
            removed = state.get("removed_message_count", 0)
            if not isinstance(removed, int) or removed < 0:
                removed = 0
            logger.info("conversation manager state of %s: resuming from message %d", name, removed)
            state = {"__name__": type(self).__name__, "removed_message_count": removed}
        return super().restore_from_session(state)
