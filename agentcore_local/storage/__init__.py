"""Session storage on disk, its walks, and what AWS would not keep (SessionStorage)."""

from .disk import SessionStorage

__all__ = ["SessionStorage"]
