"""A direct-code-deployment zip: checked, then unpacked read-only, once per runtime version.

AWS's direct code deployment (devguide runtime-get-started-code-deploy, -python, -node): the zip
holds the agent's code and its dependencies at its root (`pip install --target`, or node_modules/),
with POSIX permissions kept. The size limits here are this emulator's (AWS's figure is not on
those pages): a zip over MAX_ZIP_BYTES or unpacking past MAX_UNPACKED_BYTES is refused.
Hostile archives get no further than the refusal: every member must stay inside, a symlink
must point inside, and device files, FIFOs and sockets are refused.

AWS runs code zips on linux/arm64, so the tools that build them (the starter toolkit's `deploy`,
`pip install --platform manylinux2014_aarch64`) put arm64 wheels in them. Here the zip runs on
this machine's own CPU: a native library (ELF) built for another one cannot load, and is refused
at once in one line rather than as an ImportError at the first call.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import posixpath
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

MAX_ZIP_BYTES = 250 * 1024**2
MAX_UNPACKED_BYTES = 750 * 1024**2
ELF_MACHINES = {0x03: "i386", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv64"}
HOST_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())


class BadCodeZip(ValueError):
    """The zip cannot run: the message says why, in one line."""


def _inside(name: str) -> str:
    """`name` normalised, or BadCodeZip when it would land outside the unpacked tree."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise BadCodeZip(f"the zip's member {name!r} is not a relative POSIX path")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        raise BadCodeZip(f"the zip's member {name!r} points outside the archive")
    return normal


def check(data: bytes, entry_point: str) -> zipfile.ZipFile:
    """The archive, opened, once every member is safe to unpack and `entry_point` is a file in it."""
    if len(data) > MAX_ZIP_BYTES:
        raise BadCodeZip(f"the zip is {len(data)} bytes; the limit is {MAX_ZIP_BYTES}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise BadCodeZip(f"not a zip file: {error}") from None
    total, files = 0, set()
    for info in archive.infolist():
        name = _inside(info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise BadCodeZip(f"the zip's member {name!r} is a device file, FIFO or socket")
        if kind == stat.S_IFLNK:
            target = archive.read(info).decode(errors="replace")
            with contextlib.suppress(BadCodeZip):
                _inside(posixpath.join(posixpath.dirname(name), target))
                target = ""
            if target:
                raise BadCodeZip(f"the zip's symlink {name!r} points outside the archive ({target})")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise BadCodeZip(f"the zip unpacks to over {MAX_UNPACKED_BYTES} bytes, the limit")
        if not info.is_dir() and kind != stat.S_IFLNK:
            files.add(name)
            if ".so" in posixpath.basename(name):
                _check_machine(archive, info, name)
    if _inside(entry_point) not in files:
        raise BadCodeZip(f"entryPoint {entry_point!r} is not a file in the zip")
    return archive


def _check_machine(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """BadCodeZip when the member is an ELF library for another CPU than this machine's."""
    with archive.open(info) as member:
        header = member.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    built_for = ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")
    if built_for != HOST_MACHINE:
        raise BadCodeZip(
            f"the zip's {name} is native code for {built_for}, this machine is {HOST_MACHINE}: "
            f"build its dependencies for this machine (pip install --target, no --platform) to run it here"
        )


def unpack(data: bytes, entry_point: str, dest: Path) -> Path:
    """`dest`, holding the checked zip's tree read-only; kept when a previous call made it."""
    if dest.is_dir():
        return dest
    archive = check(data, entry_point)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        written, links = 0, []
        for info in archive.infolist():
            name = _inside(info.filename)
            target = work / name
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                links.append((target, archive.read(info).decode()))  # last: no write goes through one
                continue
            with archive.open(info) as source, open(target, "xb") as sink:
                while chunk := source.read(1 << 20):
                    written += len(chunk)  # what was written, not what the header claims
                    if written > MAX_UNPACKED_BYTES:
                        raise BadCodeZip(f"the zip unpacks to over {MAX_UNPACKED_BYTES} bytes, the limit")
                    sink.write(chunk)
            os.chmod(target, 0o555 if mode & 0o111 else 0o444)
        root = os.path.realpath(work)
        for target, link in links:
            os.symlink(link, target)
            real = os.path.realpath(target)
            if real != root and not real.startswith(root + os.sep):  # a chain of links that leaves
                raise BadCodeZip(f"the zip's symlink {target.relative_to(work)} resolves outside the archive")
        for top, dirs, _ in os.walk(work):
            for name in dirs:
                os.chmod(Path(top, name), 0o555)
        os.chmod(work, 0o555)
        os.replace(work, dest)
    except BaseException:
        _remove(work)
        raise
    return dest


def _remove(path: Path) -> None:
    """Remove a read-only tree (its directories are made writable first)."""
    with contextlib.suppress(FileNotFoundError):
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(Path(root, name), 0o755)
        os.chmod(path, 0o755)
        shutil.rmtree(path, ignore_errors=True)
