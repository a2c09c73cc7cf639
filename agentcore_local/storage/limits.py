"""What AgentCore Session Storage does not keep, found in a local session's storage.

AWS's session storage replicates regular files, directories and symbolic links; hard links,
device files, FIFOs and UNIX sockets are not supported (the AgentCore developer guide,
"Persist session state across stop/resume with a filesystem configuration"; see the
docs/disk.md). The local storage is a plain directory that keeps all of them, so a
workspace that resumes fine here could break on AWS. `storage_walk.scan_unsupported` finds them,
so `serve` can say so.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

KINDS = {
    "hard link": "hard links are not supported (copy the file instead)",
    "FIFO": "named pipes (FIFOs) are not supported",
    "socket": "UNIX sockets are not supported (create them under /tmp)",
    "device file": "device files are not supported",
}


@dataclass(frozen=True)
class Unsupported:
    """One entry of the storage that AWS's session storage would not keep as it is."""

    path: str  # relative to the storage root
    kind: str  # a key of KINDS


def kind_of(mode: int, links: int) -> str | None:
    """The unsupported kind of a file with this st_mode and st_nlink, or None when it is fine."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISREG(mode) and links > 1:
        return "hard link"
    return None


def describe(found: list[Unsupported], shown: int = 5) -> str:
    """One line for a person: what was found, a few paths, and why it matters."""
    kinds = sorted({f.kind for f in found})
    paths = ", ".join(f.path for f in found[:shown]) + (
        f" and {len(found) - shown} more" if len(found) > shown else ""
    )
    reasons = "; ".join(KINDS[k] for k in kinds)
    return (
        f"{len(found)} entr{'y' if len(found) == 1 else 'ies'} that AgentCore Session Storage does not "
        f"support ({', '.join(kinds)}): {paths}. On AWS {reasons}."
    )
