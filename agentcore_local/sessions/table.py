"""The sessions serve knows, by (runtime id, session id): those in memory, loaded from meta.json
after a restart of serve, and saved back to it. No rules of when things happen here (runner.py,
changes.py)."""

from __future__ import annotations

from ..storage import SessionStorage
from .lifecycle import State
from .session import Session


class SessionTable:
    def __init__(self, storage: SessionStorage) -> None:
        self.storage = storage
        self.sessions: dict[tuple[str, str], Session] = {}

    def get(self, runtime_id: str, session_id: str, create: bool = True) -> Session | None:
        """The session, loaded from disk after a restart, or a new one (None if not `create`)."""
        key = (runtime_id, session_id)
        if key in self.sessions:
            return self.sessions[key]
        root = self.storage.root(runtime_id, session_id)
        meta = self.storage.read_meta(root)
        if not create and meta is None:
            return None
        self.sessions[key] = session = Session.load(runtime_id, session_id, root, meta)
        return session

    def save(self, session: Session) -> None:
        self.storage.write_meta(session.root, session.meta())

    def holding_compute(self) -> list[Session]:
        """Sessions starting, running or stopping."""
        return [s for s in self.sessions.values() if s.lifecycle.state is not State.STOPPED]

    def active(self) -> int:
        """Sessions holding compute (starting, running or stopping): what --max-sessions caps."""
        return len(self.holding_compute())

    def loaded(self, runtime_id: str) -> list[Session]:
        """The runtime's sessions in memory (those invoked since serve started)."""
        return [s for s in self.sessions.values() if s.runtime_id == runtime_id]

    def all_of(self, runtime_id: str) -> list[Session]:
        """Every session of the runtime: those in memory and those only meta.json remembers."""
        for meta_file in (self.storage.state_dir / "sessions" / runtime_id).glob("*/meta.json"):
            meta = self.storage.read_meta(meta_file.parent) or {}
            if isinstance(meta.get("runtimeSessionId"), str):
                self.get(runtime_id, meta["runtimeSessionId"], create=False)
        return self.loaded(runtime_id)

    def forget(self, session: Session) -> None:
        self.sessions.pop((session.runtime_id, session.session_id), None)
