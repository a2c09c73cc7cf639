"""The workspace: the only directory the file tools may touch, and what it holds.

Paths resolve race-free, relative to a descriptor of the workspace directory, one
component at a time: every directory is opened with O_NOFOLLOW|O_DIRECTORY relative to
its parent's descriptor, so a symlink is never followed (not even in a parent, not even
one swapped in mid-call), `..` is refused, an absolute path must name the workspace, and
`.sessions/` (the conversation history) is refused. The opened directory is checked to
still lie under the workspace by walking its `..` chain back to the root's inode.

Writes never go through a name: the new content goes to a temporary file in the same
directory, which then replaces (or, for a new file, is linked as) the name. A file with
more than one hard link is refused, since writing it would change its other names too.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from agent.session_files import SESSIONS

MAX_FILE_BYTES = 1 << 20  # what one view or edit reads; larger files are for the shell (sed -n, head)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO never waits for a writer.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OutsideWorkspace(ValueError):
    """A tool asked for a path the agent may not touch, or a file the tools refuse to write."""


@dataclass(frozen=True)
class Workspace:
    """File access confined to `root`. Holds no descriptor: the mount may appear after start-up."""

    root: Path

    def parts(self, path: str) -> list[str]:
        """The components of `path` below the root, or OutsideWorkspace saying why not."""
        rest = path
        if path.startswith("/"):
            bases = {str(self.root).rstrip("/"), os.path.realpath(self.root).rstrip("/")}
            base = next((b for b in bases if path == b or path.startswith(b + "/")), None)
            if base is None:
                raise OutsideWorkspace(f"{path!r} is outside the workspace {self.root}; use a path inside it")
            rest = path[len(base) :]
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise OutsideWorkspace(
                f"Invalid path {path!r}: path traversal is not allowed; name it from the workspace"
            )
        if parts and parts[0] == SESSIONS:
            raise OutsideWorkspace(f"{path!r} is the conversation history, which tools may not touch")
        return parts

    @contextmanager
    def directory(self, path: str, parts: list[str], create: bool = False) -> Iterator[int]:
        """A descriptor of the directory `parts` names (made if `create`), checked to lie inside."""
        root = os.open(
            self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        )  # the mount itself may be a link
        fd = root
        try:
            root_id = _identity(os.fstat(root))
            for name in parts:
                child = _open_dir(fd, name, path, create)
                if fd != root:
                    os.close(fd)
                fd = child
            if parts:
                _check_inside(fd, len(parts), root_id, path)
            yield fd
        finally:
            if fd != root:
                os.close(fd)
            os.close(root)

    def kind(self, path: str) -> str | None:
        """ "file", "dir", or None when nothing is there. Links and other types raise OutsideWorkspace."""
        parts = self.parts(path)
        if not parts:
            return "dir"
        try:
            with self.directory(path, parts[:-1]) as parent:
                mode = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISREG(mode):
            return "file"
        raise OutsideWorkspace(
            f"{path!r} is {_what(mode)}; the file tools open only regular files and directories"
        )

    def read_text(self, path: str) -> str:
        """A regular file's text (UTF-8, at most MAX_FILE_BYTES)."""
        parts = self._file_parts(path)
        with self.directory(path, parts[:-1]) as parent:
            fd = _open_file(parent, parts[-1], path)
            try:
                return _read(fd, path)
            finally:
                os.close(fd)

    def edit_text(self, path: str, change: Callable[[str], str]) -> str:
        """Read a file, write `change(text)` in its place atomically, return what `change` returned."""
        parts = self._file_parts(path)
        with self.directory(path, parts[:-1]) as parent:
            fd = _open_file(parent, parts[-1], path)
            try:
                info = os.fstat(fd)
                _refuse_links(info, path)
                new = change(_read(fd, path))
            finally:
                os.close(fd)
            _replace(parent, parts[-1], new, stat.S_IMODE(info.st_mode))
        return new

    def create_text(self, path: str, text: str) -> None:
        """Write a new file (and its missing directories). Never overwrites what is there."""
        parts = self._file_parts(path)
        with self.directory(path, parts[:-1], create=True) as parent:
            tmp = _write_temp(parent, parts[-1], text, 0o644)
            try:
                os.link(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                raise OutsideWorkspace(
                    f"File already exists at: {path}. Cannot overwrite files using command `create`; "
                    "use `str_replace` to change it"
                ) from None
            finally:
                os.unlink(tmp, dir_fd=parent)

    def list_dir(self, path: str, depth: int = 2, limit: int = 500) -> list[str]:
        """Names under a directory, `depth` levels deep, hidden ones left out, never following a link."""
        found: list[str] = []
        with self.directory(path, self.parts(path)) as top:
            todo = [(os.dup(top), "", 0)]
            while todo and len(found) < limit:
                fd, prefix, level = todo.pop()
                try:
                    with os.scandir(fd) as entries:
                        for entry in sorted(entries, key=lambda e: e.name):
                            if entry.name.startswith("."):
                                continue
                            found.append(prefix + entry.name)
                            if level + 1 < depth and entry.is_dir(follow_symlinks=False):
                                with suppress(OSError):  # it went away or became a link: list the rest
                                    todo.append(
                                        (
                                            os.open(entry.name, _DIR, dir_fd=fd),
                                            f"{prefix}{entry.name}/",
                                            level + 1,
                                        )
                                    )
                finally:
                    os.close(fd)
            for fd, _, _ in todo:
                os.close(fd)
        return sorted(found)[:limit]

    def _file_parts(self, path: str) -> list[str]:
        parts = self.parts(path)
        if not parts:
            raise OutsideWorkspace(f"{path!r} is the workspace directory itself, not a file")
        return parts


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _what(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link (the file tools never follow links)"
    return "not a regular file (a FIFO, socket or device)"


def _open_dir(parent: int, name: str, path: str, create: bool) -> int:
    try:
        try:
            return os.open(name, _DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise FileNotFoundError(f"The path {path} does not exist (no directory {name!r})") from None
            with suppress(FileExistsError):  # made by someone else meanwhile: open it like any other
                os.mkdir(name, 0o755, dir_fd=parent)
            return os.open(name, _DIR, dir_fd=parent)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutsideWorkspace(
                f"{path!r}: {name!r} is a symbolic link; the file tools never follow links"
            ) from None
        if e.errno == errno.ENOTDIR:  # O_NOFOLLOW|O_DIRECTORY says ENOTDIR for a link too: name which
            with suppress(OSError):
                if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    raise OutsideWorkspace(
                        f"{path!r}: {name!r} is a symbolic link; the file tools never follow links"
                    ) from None
            raise OutsideWorkspace(f"{path!r}: {name!r} is not a directory") from None
        raise


def _check_inside(fd: int, depth: int, root: tuple[int, int], path: str) -> None:
    """`depth` steps up from `fd` must be the root: nothing was moved out from under the walk."""
    current = os.dup(fd)
    try:
        for _ in range(depth):
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=current)
            os.close(current)
            current = up
        if _identity(os.fstat(current)) != root:
            raise OutsideWorkspace(f"{path!r} was moved out of the workspace while it was being opened")
    finally:
        os.close(current)


def _open_file(parent: int, name: str, path: str) -> int:
    try:
        fd = os.open(name, _READ, dir_fd=parent)
    except FileNotFoundError:
        raise FileNotFoundError(f"The path {path} does not exist. Please provide a valid path.") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutsideWorkspace(
                f"{path!r} is a symbolic link; the file tools never follow links"
            ) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise OutsideWorkspace(f"The path {path} is a directory; only `view` works on directories")
        raise OutsideWorkspace(f"{path!r} is {_what(mode)}; the file tools open only regular files")
    return fd


def _refuse_links(info: os.stat_result, path: str) -> None:
    if info.st_nlink > 1:
        raise OutsideWorkspace(
            f"{path!r} has {info.st_nlink} hard links: writing it would change the other names too, maybe "
            "outside the workspace, so the file tools refuse. Make a private copy with the shell "
            "(cp f f.new && mv f.new f) if you mean to edit it"
        )


def _read(fd: int, path: str) -> str:
    data = os.read(fd, MAX_FILE_BYTES + 1)
    while len(data) <= MAX_FILE_BYTES and (more := os.read(fd, MAX_FILE_BYTES + 1 - len(data))):
        data += more
    if len(data) > MAX_FILE_BYTES:
        raise OutsideWorkspace(
            f"{path} is larger than {MAX_FILE_BYTES} bytes; read parts of it with the shell (sed -n, grep)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OutsideWorkspace(f"{path} is not UTF-8 text; inspect it with the shell (file, xxd)") from None


def _write_temp(parent: int, name: str, text: str, mode: int) -> str:
    tmp = f".{name[:200]}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, _NEW, mode, dir_fd=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as f:
            f.write(text)
        os.fchmod(fd, mode)  # not narrowed by the umask: an edited script stays executable
    except BaseException:
        os.unlink(tmp, dir_fd=parent)
        raise
    finally:
        os.close(fd)
    return tmp


def _replace(parent: int, name: str, text: str, mode: int) -> None:
    """Rename a finished temp file over `name`: replaces the name itself, never what a link points at."""
    tmp = _write_temp(parent, name, text, mode)
    try:
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=parent)
        raise
