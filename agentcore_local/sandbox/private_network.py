"""A compute's own network namespace: the host's way in, and the sandbox's way out.

In: a listening unix socket in a host directory private to this compute (0700), handed to
sandbox_init, which carries every connection on it to the agent's port inside (the host has no
other route into the namespace). Out: slirp4netns, a user-mode stack (`--disable-host-loopback`)
attached once bwrap has built the namespace, and ended when the compute is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..errors import RuntimeClientError
from .launcher import Launcher

log = logging.getLogger("agentcore_local.private_network")
NS_GET_USERNS = 0xB701  # linux/nsfs.h: the user namespace that owns a namespace


def netns_owner(pid: int) -> int:
    """An fd of the user namespace owning `pid`'s network namespace. Not always /proc/PID/ns/user:
    unprivileged bwrap nests a second user namespace (for devpts), which cannot enter the network's."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)


def read_until_closed(fd: int, limit: int = 65536) -> bytes:
    """Everything written to a pipe until its writers close it (bwrap's --info-fd, a ready fd)."""
    data = b""
    try:
        while len(data) < limit and (chunk := os.read(fd, 4096)):
            data += chunk
            if data.endswith(b"}\n") or data == b"1":
                break
    finally:
        os.close(fd)
    return data


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(text)


class PrivateNetwork:
    """Made before the sandbox starts (the socket and bwrap's info pipe are inherited by it)."""

    def __init__(self, launcher: Launcher, name: str, log_path: Path) -> None:
        self.launcher, self.name, self.log_path = launcher, name, log_path
        self.network_ms: float | None = None  # how long the stack took to come up
        self._process: asyncio.subprocess.Process | None = None
        self._exit_fd: int | None = None
        # 0700, and short: a unix socket path has at most 107 bytes
        self.run_dir = Path(tempfile.mkdtemp(prefix="agentcore-"))
        self.socket_path = self.run_dir / "agent.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.socket_path))
        self.listener.listen(128)
        self.info_read, self.info_write = os.pipe()
        self._info_read_open = True

    @property
    def inherited(self) -> tuple[int, int]:
        """The fds the sandbox inherits: bwrap's --info-fd, and the listening socket."""
        return self.info_write, self.listener.fileno()

    def handed_over(self) -> None:
        """The sandbox holds its copies now (the info pipe reads EOF once bwrap is gone)."""
        os.close(self.info_write)
        self.listener.close()

    async def sandbox_pid(self, init: asyncio.Event, exited: asyncio.Event, timeout: float) -> int:
        """The host pid of the sandbox's first process, once sandbox_init runs in it (`init`)."""
        self._info_read_open = False  # read_until_closed closes it
        info = await asyncio.wait_for(asyncio.to_thread(read_until_closed, self.info_read), timeout)
        # Attached only once bwrap has set up the namespace's loopback: slirp4netns configuring it
        # meanwhile made bwrap fail ("loopback: Failed RTM_NEWADDR").
        waits = [asyncio.ensure_future(e.wait()) for e in (init, exited)]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waits:
            waiter.cancel()
        try:
            if not init.is_set():
                raise ValueError("sandbox_init did not start")
            return int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            raise RuntimeClientError(
                "The sandbox did not start (bwrap said nothing of its child). "
                f"Its log:\n{log_tail(self.log_path)}"
            ) from None

    async def start(self, child_pid: int, timeout: float) -> None:
        """Give the sandbox's network namespace its user-mode stack; returns once it is configured."""
        began = time.monotonic()  # the stack's own cost: from its launch to a configured namespace
        ready_read, ready_write = os.pipe()
        exit_read, self._exit_fd = os.pipe()  # slirp4netns ends when we close our end (or die)
        try:
            userns = netns_owner(child_pid)
        except OSError as error:
            for fd in (ready_read, ready_write, exit_read):
                os.close(fd)
            raise RuntimeClientError(f"The sandbox's network namespace is gone: {error}") from error
        try:
            argv = self.launcher.network_argv(child_pid, ready_write, exit_read, f"/proc/self/fd/{userns}")
            with open(self.log_path, "ab") as log_file:
                self._process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env=self.launcher.host_env,
                    pass_fds=(ready_write, exit_read, userns),
                    start_new_session=True,
                )
        finally:
            for fd in (ready_write, exit_read, userns):
                os.close(fd)
        ready = await asyncio.wait_for(asyncio.to_thread(read_until_closed, ready_read, 1), timeout)
        if ready != b"1":
            raise RuntimeClientError(
                f"The sandbox's network did not come up (slirp4netns). Its log:\n{log_tail(self.log_path)}"
            )
        self.network_ms = (time.monotonic() - began) * 1000
        log.info("compute=<%s> | private network up in %.1f ms", self.name, self.network_ms)

    def end(self) -> None:
        """Tell the stack to end (it outlives the sandbox otherwise); `close` waits for it."""
        if self._info_read_open:  # the sandbox never started
            os.close(self.info_read)
            self._info_read_open = False
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None

    async def close(self) -> None:
        """Once the stack has ended (`end` first, if not yet), remove the socket's directory."""
        self.end()
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
