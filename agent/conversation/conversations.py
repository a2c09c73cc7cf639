"""Warm conversations: one Agent per conversation id, kept in memory, running one turn at a time.

Two Agents on one session id overwrite each other's history files silently, so a
conversation's turns are serialized here: a second turn while one runs is refused
(409), never queued behind it. Agents stay warm between turns so a turn does not
re-read the whole history from disk; the least recently used ones are let go. The pool's
guard is held only for dictionary updates, never during a restore's disk I/O, so a slow
(or wedged) restore of one conversation never holds up another's turn.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from strands import Agent
from strands.session.file_session_manager import FileSessionManager

Opener = Callable[[str], tuple[Agent, FileSessionManager, list[str]]]


class Busy(RuntimeError):
    """The conversation is already mid-turn."""


@dataclass
class Conversation:
    """One conversation's Agent and what opening it found."""

    id: str
    agent: Agent | None = None  # None until opened (restored from session storage)
    session_manager: FileSessionManager | None = None
    quarantined: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Conversations:
    """The warm pool. `opener(id)` restores a conversation: (agent, session_manager, quarantined files)."""

    def __init__(self, opener: Opener, limit: int = 32) -> None:
        self._opener = opener
        self._limit = limit
        self._guard = threading.Lock()
        self._pool: OrderedDict[str, Conversation] = OrderedDict()
        self._opening: dict[str, float] = {}  # conversation id -> when its restore started

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
            with self._guard:
                self._opening[conversation.id] = time.monotonic()
            try:
                conversation.agent, conversation.session_manager, conversation.quarantined = self._opener(
                    conversation.id
                )
            finally:
                with self._guard:
                    del self._opening[conversation.id]
        return conversation

    def stalled_opens(self, after: float) -> list[str]:
        """Conversations whose restore has run for more than `after` seconds (for /ping)."""
        now = time.monotonic()
        with self._guard:
            return [cid for cid, started in self._opening.items() if now - started > after]

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
