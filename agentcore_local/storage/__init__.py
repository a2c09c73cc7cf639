"""Session storage on disk, its walks, its filesystem, and what AWS would not keep (SessionStorage)."""

from .disk import SessionStorage, frees_or_reads
from .volume import Volumes, unmount_under

__all__ = ["SessionStorage", "Volumes", "frees_or_reads", "unmount_under"]
