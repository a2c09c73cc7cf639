"""Warm conversations: one Agent per conversation id, kept in memory, running one turn at a time.

Two Agents on one session id overwrite each other's history files silently, so a
conversation's turns are serialized here: a second turn while one runs is refused
(409), never queued behind it. Agents stay warm between turns so a turn does not
re-read the whole history from disk; the least recently used ones are let go.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Busy(RuntimeError):
    """The conversation is already mid-turn."""


@dataclass
class Conversation:
    """One conversation's Agent and what opening it found."""

    id: str
    agent: Any = None
    session_manager: Any = None
    quarantined: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Conversations:
    """The warm pool. `opener(id)` restores a conversation: (agent, session_manager, quarantined files)."""

    def __init__(self, opener: Callable[[str], tuple[Any, Any, list[str]]], limit: int = 32) -> None:
        self._opener = opener
        self._limit = limit
        self._guard = threading.Lock()
        self._pool: OrderedDict[str, Conversation] = OrderedDict()

    def begin(self, conversation_id: str) -> Conversation:
        """Claim the conversation for one turn, or raise Busy. Cheap: no disk I/O happens here."""
        with self._guard:
            conversation = self._pool.get(conversation_id) or Conversation(conversation_id)
            if not conversation.lock.acquire(blocking=False):
                raise Busy(f"conversation {conversation_id!r} is already running a turn; retry when it ends")
            self._pool[conversation_id] = conversation
            self._pool.move_to_end(conversation_id)
            self._evict()
        return conversation

    def open(self, conversation: Conversation) -> Conversation:
        """Restore the Agent if it is not warm yet. Call while holding the conversation (after begin)."""
        if conversation.agent is None:
            conversation.agent, conversation.session_manager, conversation.quarantined = self._opener(
                conversation.id
            )
        return conversation

    @staticmethod
    def end(conversation: Conversation) -> None:
        conversation.lock.release()

    @staticmethod
    def drop(conversation: Conversation) -> None:
        """Forget the warm Agent (an undo shortened its history): the next turn restores it from disk."""
        conversation.agent = conversation.session_manager = None

    def _evict(self) -> None:
        idle = [cid for cid, c in self._pool.items() if not c.lock.locked()]
        for cid in idle[: max(0, len(self._pool) - self._limit)]:
            del self._pool[cid]
