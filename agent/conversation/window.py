"""A window that trims in steps and only between turns, so a long conversation's warm turn stays cheap.

Strands' SlidingWindowConversationManager trims on every turn once the window is full. Each
trim moves `removed_message_count`, so FileSessionManager rewrites agent.json on every turn.
And every model call costs Strands work per message in memory (two deep copies, two JSON
encodings for its tracer: docs/performance.md). This window lets the history grow to
`window_size + step` messages, then drops the oldest turns in one go, so agent.json changes
once every `step / 2 + 1` two-message turns and memory stays small.

What the model sees (docs/CONTRACT.md, "What the model sees"): whole turns only, a turn being
a prompt and everything up to the next prompt. After a turn that leaves more than
`window_size + step` messages in memory, the oldest turns are dropped: the newest turns that
together hold at least `window_size` messages stay, so the history always opens on a prompt
and no tool call is cut from its result. One turn longer than that stays whole (the turn
budget bounds it). Stored history is never deleted: every message stays in session storage.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.types.content import Message, Messages

if TYPE_CHECKING:
    from strands import Agent

logger = logging.getLogger(__name__)

# At least 30 of the newest messages (whole turns), at most 40 (Strands' own default window)
# before a trim. What the bench measured for each choice: docs/performance.md, row 3.
WINDOW = 30
STEP = 10


def is_prompt(message: Message) -> bool:
    """A turn's first message: the user's, carrying no tool result."""
    return message["role"] == "user" and not any("toolResult" in block for block in message["content"])


def whole_turn_cut(messages: Messages, keep: int) -> int:
    """How many of the oldest messages to drop so the newest whole turns holding `keep` or more stay.

    0 when no prompt after the first message lies far enough back (the oldest turn is still needed).
    """
    for index in range(len(messages) - keep, 0, -1):
        if is_prompt(messages[index]):
            return index
    return 0


class SteppedWindowConversationManager(SlidingWindowConversationManager):
    """Keep the newest whole turns, at least `window_size` messages; trim only past `window_size + step`."""

    def __init__(self, window_size: int = WINDOW, step: int = STEP, **kwargs: Any) -> None:
        if window_size < 1 or step < 1:
            raise ValueError(f"window_size and step must be at least 1, got {window_size} and {step}")
        if kwargs.get("pin_first"):  # pins live in memory only; a restore from storage drops them
            raise ValueError("pin_first does not survive a restore from session storage")
        super().__init__(window_size=window_size, **kwargs)
        self.step = step

    def apply_management(self, agent: Agent, **kwargs: Any) -> None:
        """After each invocation: once past window + step, drop the oldest whole turns."""
        messages = agent.messages
        if len(messages) <= self.window_size + self.step:
            return
        cut = whole_turn_cut(messages, self.window_size)
        if cut:
            del messages[:cut]
            self.removed_message_count += cut  # stored messages before the first one in memory
            logger.debug("removed=<%d>, kept=<%d> | dropped the oldest whole turns", cut, len(messages))

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
