"""Sections 2 and 4: through agentcore_local, as a user runs it (`python -m agentcore_local serve`)
and reaches it (boto3): the proxy's cost per turn, stop -> resume, a new session's first answer.
The runtime they run on (`LocalRuntime`) serves sections 5 and 6 too (bench/load.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError

from agentcore_local.server import ENDPOINT_FILE
from agentcore_local.sessions.pool import tree_usage
from bench.measure import distribution_ms, timed
from cloud.session_calls import read_command_stream

REPO = Path(__file__).resolve().parent.parent
PLAN = Path(__file__).resolve().with_name("plan.json")
SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
SEED_SLEEP_S = 15.0  # the seed's client: stop, time.sleep(15), invoke


def new_session(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex}"  # >= 33 characters, as AgentCore requires


MAX_SESSIONS = 32


class LocalRuntime:
    """agentcore_local as a child process on a free port, with the scripted model and bench/plan.json."""

    def __init__(
        self, state_dir: Path, sandbox: str = "bwrap", pool: int = 1, extra: tuple[str, ...] = ()
    ) -> None:
        self.state_dir = state_dir
        env = {**os.environ, "MODEL_PROVIDER": "scripted", "SCRIPTED_PLAN": str(PLAN)}
        argv = [sys.executable, "-m", "agentcore_local", "serve", "--port", "0"]
        argv += ["--state-dir", str(state_dir), "--sandbox", sandbox, "--pool", str(pool)]
        # The scale section runs 20 sessions at once: above serve's default cap on 2 cores (16).
        argv += ["--max-sessions", str(MAX_SESSIONS), *extra]
        state_dir.mkdir(parents=True, exist_ok=True)
        self.log = state_dir / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        endpoint = self._wait_for_endpoint(60)
        self.url, self.arn = endpoint["url"], endpoint["agentRuntimeArn"]
        self.invocations_url = f"{self.url}/runtimes/{urllib.parse.quote(self.arn, safe='')}/invocations"

    def _wait_for_endpoint(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentcore_local exited: {self.log.read_text()[-2000:]}")
            try:
                return json.loads((self.state_dir / ENDPOINT_FILE).read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
        raise TimeoutError("agentcore_local did not start")

    def client(self, pool: int = 10):
        config = Config(
            read_timeout=300, retries={"total_max_attempts": 1}, max_pool_connections=max(pool, 10)
        )
        return self._boto3("bedrock-agentcore", config)

    def control(self):
        """The control plane, no retries: a slow answer is measured, not hidden."""
        return self._boto3(
            "bedrock-agentcore-control", Config(retries={"total_max_attempts": 1}, read_timeout=60)
        )

    def _boto3(self, service: str, config: Config):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-west-2",
            aws_access_key_id="agentcore-local",
            aws_secret_access_key="agentcore-local",
            config=config,
        )

    def invoke(self, client, session: str, prompt: str, conversation: str | None = None) -> dict:
        body = {"prompt": prompt, **({"conversation_id": conversation} if conversation else {})}
        answer = client.invoke_agent_runtime(
            agentRuntimeArn=self.arn, runtimeSessionId=session, payload=json.dumps(body)
        )
        return json.loads(answer["response"].read())

    def resume(self, client, session: str, prompt: str) -> dict:
        """Invoke right after a stop, retrying RetryableConflict with backoff (what client.py does)."""
        delay = 0.05
        while True:
            try:
                return self.invoke(client, session, prompt)
            except ClientError as error:
                if error.response["Error"]["Code"] != "RetryableConflictException" or delay > 5:
                    raise
                time.sleep(delay)
                delay *= 2

    def stop(self, client, session: str) -> None:
        client.stop_runtime_session(agentRuntimeArn=self.arn, runtimeSessionId=session)

    def command(self, client, session: str, command: str, timeout: int = 300) -> tuple[int | None, str]:
        answer = client.invoke_agent_runtime_command(
            agentRuntimeArn=self.arn, runtimeSessionId=session, body={"command": command, "timeout": timeout}
        )
        result = read_command_stream(answer["stream"])
        return result.exit_code, result.stdout

    def storage(self, session: str) -> Path:
        """Where `session`'s storage lives on the host (the default runtime's)."""
        key = hashlib.sha256(session.encode()).hexdigest()[:32]
        return self.state_dir / "sessions" / self.arn.rsplit("/", 1)[1] / key / "storage"

    def session_row(self, session: str) -> dict:
        """The session as /_local/sessions describes it (pid, agentSocket, agentUrl, ...)."""
        rows = httpx.get(f"{self.url}/_local/sessions").json()["sessions"]
        return next(row for row in rows if row["runtimeSessionId"] == session)

    def compute_pids(self) -> dict[str, int]:
        """Each running session's compute (its bwrap process), from agentcore_local's /_local/sessions."""
        rows = httpx.get(f"{self.url}/_local/sessions").json()["sessions"]
        return {row["runtimeSessionId"]: row["pid"] for row in rows if row["pid"]}

    def pool(self) -> dict:
        """The warm pool as serve reports it (/_local/sessions): size, members, refills, a refill's CPU."""
        return httpx.get(f"{self.url}/_local/sessions").json().get("pool") or {"size": 0, "members": []}

    def wait_for_pool(self, other_than: set[int] = frozenset(), timeout: float = 60) -> dict | None:  # type: ignore[assignment]
        """A running pool member not in `other_than` (None at once when the pool is off)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pool = self.pool()
            if not pool["size"]:
                return None
            ready = [m for m in pool["members"] if m["running"] and m["pid"] not in other_than]
            if ready:
                return ready[0]
            time.sleep(0.02)
        raise TimeoutError("the warm pool did not refill")

    def close(self) -> None:
        self.proc.terminate()  # serve stops every session's compute, then exits
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def turn_overhead(rt: LocalRuntime, turns: int) -> dict:
    """One session's agent, three ways, interleaved turn by turn so each sees the same load:
    httpx straight to coding_agent.py in its sandbox, httpx through agentcore_local, boto3 through it."""
    session, client = new_session("turns"), rt.client()
    rt.invoke(client, session, "start the compute")
    row = rt.session_row(session)
    # Straight to the agent as the emulator reaches it: its unix socket in a private network
    # (relayed by sandbox_init to 127.0.0.1:8080 inside), else its host port.
    sock, direct_url = row.get("agentSocket"), f"{row['agentUrl']}/invocations"
    direct = (
        httpx.Client(timeout=60, transport=httpx.HTTPTransport(uds=sock))
        if sock
        else httpx.Client(timeout=60)
    )
    http = httpx.Client(timeout=60)
    body = json.dumps({"prompt": "hi", "conversation_id": "bench-turns"}).encode()
    headers = {SESSION_HEADER: session, "content-type": "application/json"}
    ways = {
        "direct": lambda: direct.post(direct_url, content=body, headers=headers),
        "proxy_httpx": lambda: http.post(rt.invocations_url, content=body, headers=headers),
        "proxy_boto3": lambda: rt.invoke(client, session, "hi", conversation="bench-turns"),
    }
    for call in ways.values():  # connections open, the window of 40 messages full
        for _ in range(25):
            call()
    latencies: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(turns):
        for name, call in ways.items():
            latencies[name].append(timed(call))
    rows = {name: distribution_ms(values) for name, values in latencies.items()}
    direct, proxied = rows["direct"]["p50_ms"], rows["proxy_httpx"]["p50_ms"]
    return {
        **rows,
        "proxy_adds_p50_ms": proxied - direct,
        "boto3_client_adds_p50_ms": rows["proxy_boto3"]["p50_ms"] - proxied,
        "targets": "direct p50 <= 15 ms; the proxy adds <= 5 ms",
    }


def stop_resume(rt: LocalRuntime, repeats: int, seed_s: float | None = None) -> dict:
    """StopRuntimeSession to the first resumed answer, against the seed's stop + sleep(15) + invoke
    (`seed_s`: measured by `seed_way`; None: computed from the parts). With a pool, each repeat
    waits for a member first, as a resume a while after the last would find one."""
    session, client = new_session("resume"), rt.client()
    rt.invoke(client, session, "write a line")
    stops, resumes, totals, history = [], [], [], []
    for _ in range(repeats):
        rt.wait_for_pool(set(rt.compute_pids().values()))
        started = time.perf_counter()
        rt.stop(client, session)
        stopped = time.perf_counter()
        answer = rt.resume(client, session, "write a line")
        done = time.perf_counter()
        stops.append(stopped - started)
        resumes.append(done - stopped)
        totals.append(done - started)
        history.append(answer["history"]["messages_before"])
    ours = statistics.median(totals)
    how = "measured: stop, sleep(15), invoke"
    if seed_s is None:
        seed_s = statistics.median(stops) + SEED_SLEEP_S + statistics.median(resumes)
        how = "computed: measured stop + 15 s + measured resume invoke"
    pool = rt.pool()
    return {
        "repeats": repeats,
        "pool": pool["size"],
        "stop_s": statistics.median(stops),
        "first_answer_after_stop_s": statistics.median(resumes),
        "ours_s": ours,
        "seed_s": seed_s,
        "seed_how": how,
        "speedup": seed_s / ours,
        "history_kept": history == sorted(history) and history[0] > 0,
        "target": ">= 50 x with a warm pool, >= 20 x without",
    }


def seed_way(rt: LocalRuntime) -> float:
    """The seed's client after a stop: stop, time.sleep(15), invoke (measured once)."""
    session, client = new_session("seed"), rt.client()
    rt.invoke(client, session, "write a line")
    started = time.perf_counter()
    rt.stop(client, session)
    time.sleep(SEED_SLEEP_S)
    rt.invoke(client, session, "write a line")
    return time.perf_counter() - started


def new_session_first_answer(rt: LocalRuntime, repeats: int) -> dict:
    """A new session's first answer (InvokeAgentRuntime to the parsed answer): from a warm pool
    when the server has one (each repeat waits for the refill, and for it to settle: its agent
    warms up in the background after its first /ping, agent/service/warmup.py), else a fresh sandbox.
    Also what the pool costs: the resident memory of one idle member and the CPU one refill took
    (its start and warm-up: all the member used until it settled)."""
    client, firsts, rss, cpu, served = rt.client(), [], [], [], []
    for _ in range(repeats):
        member = rt.wait_for_pool(set(rt.compute_pids().values()))
        if member is not None:
            settle(member["pid"])  # as a session arriving a while after the last finds it
            used_cpu, resident = tree_usage(member["pid"])
            cpu.append(used_cpu)
            rss.append(resident)
        session = new_session("first")
        started = time.perf_counter()
        rt.invoke(client, session, "write a line")
        firsts.append(time.perf_counter() - started)
        served.append(member is not None and rt.compute_pids().get(session) == member["pid"])
        rt.stop(client, session)
    pool = rt.pool()
    return {
        "repeats": repeats,
        "pool": pool["size"],
        "first_answer_s": statistics.median(firsts),
        "served_by_member": all(served),
        "idle_member_rss_mib": statistics.median(rss) / 2**20 if rss else None,
        "refill_cpu_s": statistics.median(cpu) if cpu else None,
        "refill_cpu_to_healthy_s": pool.get("lastRefillCpuSeconds"),
        "target": "<= 0.15 s from a warm pool",
    }


def settle(pid: int, idle_cpu_s: float = 0.003, window_s: float = 0.1, timeout: float = 10.0) -> None:
    """Until the process tree of `pid` used under `idle_cpu_s` of CPU in each of two windows running."""
    deadline, quiet = time.monotonic() + timeout, 0
    before = tree_usage(pid)[0]
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(window_s)
        now = tree_usage(pid)[0]
        quiet, before = (quiet + 1 if now - before < idle_cpu_s else 0), now
