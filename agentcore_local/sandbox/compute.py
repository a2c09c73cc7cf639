"""One running compute: a sandboxed `sandbox_init.py` + agent, its health check, commands and
stop. The agent is reached on a host port, or, in a network namespace of its own
(private_network.py), through a unix socket that sandbox_init carries to the agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from ..errors import RuntimeClientError
from ..services import Forwarder
from .confinement import Confinement
from .init_channel import InitChannel
from .launcher import Launcher, LaunchSpec
from .private_network import PrivateNetwork, log_tail
from .slots import Slot

log = logging.getLogger("agentcore_local.compute")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Compute:
    """The process tree of one session's compute, driven over sandbox_init's stdin/stdout protocol."""

    def __init__(
        self,
        launcher: Launcher,
        spec: LaunchSpec,
        log_path: Path,
        on_exit: Callable[[Compute], None],
        grace: float = 10.0,
        forwarder: Forwarder | None = None,
        shared_socket: Path | None = None,
    ):
        self.launcher = launcher
        self.spec = spec
        self.log_path = log_path
        self.grace = grace  # SIGTERM -> SIGKILL, also when sandbox_init itself is sent SIGTERM
        self._on_exit = on_exit
        # The listener's shared socket in spec.forwards is replaced by one of this compute's own.
        self._forwarder, self._shared_socket = forwarder, shared_socket
        self.socket_path: Path | None = None
        self.url = f"http://127.0.0.1:{spec.port}"
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0))
        self._network: PrivateNetwork | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._exited = asyncio.Event()
        self._channel = InitChannel(lambda: self.lost)  # its stdin and stdout
        self.stopping = False
        self._slot: Slot | None = None
        self.started_at: float | None = None  # time.time() when it answered Healthy
        # Its cgroup (docker: none of ours, docker makes its own).
        own = launcher.own_cgroups
        self.confinement = Confinement(spec.name, launcher.cgroups, launcher.limits) if own else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def lost(self) -> str | None:
        """Why the kernel ended this compute (its memory limit), or None."""
        return self.confinement.lost if self.confinement else None

    @property
    def exit_code(self) -> int | None:
        """The agent's exit code, as sandbox_init reported it."""
        return self._channel.exit_code

    @property
    def running(self) -> bool:
        return self._process is not None and not self._exited.is_set()

    async def start(self, timeout: float) -> None:
        """Launch, then wait for sandbox_init's word that /ping said Healthy; RuntimeClientError when
        it dies or never answers."""
        spec, net, pass_fds = self.spec, None, ()
        if self.launcher.private_network:
            net = self._network = PrivateNetwork(self.launcher, spec.name, self.log_path)
            pass_fds = net.inherited
            spec = self.spec = replace(spec, run_dir=net.run_dir, info_fd=pass_fds[0])
            if self._forwarder is not None:
                spec = self.spec = replace(spec, forwards=self._own_forwards(spec.forwards, net.run_dir))
            self.socket_path, self.url = net.socket_path, "http://agent"
            self.http = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
                timeout=httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0),
            )
        try:
            if spec.slot_dir is not None:
                self._slot = Slot.create(spec.slot_dir, Path(spec.mount_path).name)
            argv, env, cwd = self.launcher.command(spec)
            if self.confinement is not None:
                argv = self.confinement.wrap(argv)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log_file:
                self._process = self._channel.process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log_file,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,  # its own process group: a last-resort SIGKILL reaches all of it
                    limit=4 * 1024 * 1024,
                    pass_fds=pass_fds,
                )
        except BaseException:
            if net is not None:
                net.handed_over()
            await self._release()  # the slot's mounts, the socket's directory
            raise
        if net is not None:
            net.handed_over()
        self._reader = asyncio.create_task(self._read())
        network: asyncio.Task | None = None
        try:
            if net is not None:
                child_pid = await net.sandbox_pid(self._channel.init, self._exited, timeout)
                # The network comes up while the agent imports: it needs none before it answers /ping.
                network = asyncio.create_task(net.start(child_pid, timeout))
            await self._channel.send(
                {
                    "op": "start",
                    "env": self.launcher.agent_environment(spec),
                    "grace": self.grace,
                    "listen_fd": pass_fds[1] if pass_fds else None,
                    "agent_port": spec.port,
                    "ready": spec.readiness,
                    **self.launcher.inside(spec),
                }
            )
            if network is not None:
                await network
            await self._wait_healthy(timeout)
            self.started_at = time.time()
        except BaseException:
            if network is not None:
                network.cancel()
                with contextlib.suppress(BaseException):
                    await network
            await self.stop(grace=1.0)
            raise

    def _own_forwards(
        self, forwards: tuple[tuple[int, Path], ...], run_dir: Path
    ) -> tuple[tuple[int, Path], ...]:
        assert self._forwarder is not None
        own = self._forwarder.open(self.spec.name, run_dir)
        return tuple((port, own if path == self._shared_socket else path) for port, path in forwards)

    async def _wait_healthy(self, timeout: float) -> None:
        """Until sandbox_init says the agent's /ping answered Healthy (it polls at a fixed 10 ms)."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._channel.ready, self._exited)]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if self._channel.ready.is_set():
            return
        if self._exited.is_set():
            raise RuntimeClientError(
                f"The agent exited during start-up (code {self.exit_code}). "
                f"Its log:\n{log_tail(self.log_path)}"
            )
        raise RuntimeClientError(
            "Runtime initialization time exceeded: the agent did not answer /ping "
            f"within {timeout:.0f}s. Its log:\n{log_tail(self.log_path)}"
        )

    def hand_over(self, on_exit: Callable[[Compute], None], log_path: Path) -> None:
        """A pool member becomes a session's: its exit is the session's now, its log moves to the
        session's directory (the agent keeps writing to it: a rename keeps the open file)."""
        self._on_exit = on_exit
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if log_path.exists():
                os.replace(log_path, log_path.with_name(log_path.name + ".1"))  # the previous compute's
            os.replace(self.log_path, log_path)
            self.log_path = log_path

    @property
    def attached(self) -> Path | None:
        """The storage mounted in the sandbox at its first call (None: none yet, or bound at start)."""
        return self._slot.attached if self._slot else None

    def attach(self, storage: Path) -> None:
        """Mount the session's storage at the mount path of the running sandbox (its first call)."""
        if self._slot is None or self._slot.attached is not None:
            return
        try:
            self._slot.attach(storage)
        except OSError as error:
            raise RuntimeClientError(f"The session's storage could not be attached: {error}") from error

    async def wait_exited(self, timeout: float) -> bool:
        """True once the process has ended (within `timeout` seconds), else False."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)
        return self._exited.is_set()

    async def ping(self, headers: dict[str, str] | None = None) -> str | None:
        """The agent's /ping status (Healthy, HealthyBusy), or None when it does not answer."""
        try:
            answer = await self.http.get(f"{self.url}/ping", timeout=2.0, headers=headers)
            return answer.json().get("status")
        except (httpx.HTTPError, ValueError):
            return None

    async def _read(self) -> None:
        try:
            await self._channel.read()
        finally:
            assert self._process
            await self._process.wait()
            if self.confinement is not None:
                await self.confinement.end()
            self._exited.set()
            self._channel.close()  # commands still running: the compute is gone
            if not self.stopping:
                self._on_exit(self)

    def exec(self, command: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Run a shell command in the sandbox; yields {"stream","data"} then {"exit","status"}."""
        return self._channel.exec(command, timeout)

    async def stop(self, grace: float) -> None:
        """Graceful: sandbox_init SIGTERMs the agent, SIGKILLs it after `grace`, syncs. Then the fallbacks."""
        self.stopping = True
        if self._process is None:
            await self._release()
            return
        if not self._exited.is_set():
            with contextlib.suppress(ConnectionError, RuntimeError, AssertionError):
                await self._channel.send({"op": "stop", "grace": grace})
                self._process.stdin.close()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self._exited.wait(), grace + 5.0)
            except TimeoutError:
                log.warning("compute=<%s> | did not stop in %.0fs: killing it", self.spec.name, grace + 5.0)
                await self._kill()
        await self._process.wait()
        if self._reader:
            await self._reader
        await self._release()

    async def _release(self) -> None:
        """What outlives the sandbox unless ended: its network stack, sockets, HTTP connections."""
        if self._network is not None:
            self._network.end()  # slirp4netns notices while the rest is released
        if self._forwarder is not None:
            self._forwarder.close(self.spec.name)
        await self.http.aclose()
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        if self.confinement is not None:
            await self.confinement.end()  # a start that failed before its process ran
        if self._network is not None:
            await self._network.close()
            self._network = None

    async def _kill(self) -> None:
        kill_argv = self.launcher.kill_argv(self.spec)
        if kill_argv:
            proc = await asyncio.create_subprocess_exec(*kill_argv, stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
        assert self._process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        await asyncio.wait_for(self._exited.wait(), 10.0)
