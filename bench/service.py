"""Sections 1 and 3: coding_agent.py on its own (no agentcore_local): cold start and history growth."""

from __future__ import annotations

import compileall
import cProfile
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.measure import percentile, timed
from tests.support.agent_process import AgentProcess

PLAN = Path(__file__).resolve().with_name("plan.json")
REPO = PLAN.parent.parent

# The floor a cold start cannot beat: the two classes the service is built from, and nothing else.
FLOOR_IMPORTS = "from strands import Agent; from bedrock_agentcore.runtime import BedrockAgentCoreApp"
# What the seed's agent imported before it could serve (strands_tools is only a dev dependency now).
SEED_IMPORTS = (
    "import strands; from strands_tools import file_read, file_write, shell; import bedrock_agentcore.runtime"
)
COLD_TARGET = 1.15


def import_time(imports: str) -> float | None:
    """Spawn to "imports done" of a bare interpreter (not to its exit: tearing down modules is slow)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", imports + "; print('ready', flush=True)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    ready = child.stdout.readline().strip() == b"ready"
    elapsed = time.perf_counter() - started
    child.wait()
    return elapsed if ready else None  # None: the seed's strands_tools is not installed


def cold_start(runs: int) -> dict:
    """Process start to the first Healthy /ping, beside the floor's and the seed's imports, interleaved."""
    # The image runs with PYTHONDONTWRITEBYTECODE=1, so agent/ must be compiled ahead, as a deploy would.
    compileall.compile_dir(REPO / "agent", quiet=1)
    starts, floors, seeds = [], [], []
    for _ in range(runs):  # alternated, so all three see the same page cache and load
        agent = AgentProcess(Path(tempfile.mkdtemp(prefix="bench-cold-")), plan=PLAN)
        starts.append(agent.start())
        agent.stop()
        floors.append(import_time(FLOOR_IMPORTS))
        seeds.append(import_time(SEED_IMPORTS))
    start, floor = statistics.median(starts), statistics.median(floors)
    seed = statistics.median(seeds) if None not in seeds else None
    return {
        "runs": runs,
        "start_s": start,
        "import_floor_s": floor,
        "seed_imports_s": seed,
        "ratio": start / floor,
        "seed_ratio": seed / floor if seed else None,
        "target": f"<= {COLD_TARGET}x the floor and below the seed's imports",
    }


def history_growth(workspace: Path, sizes: tuple[int, ...], samples: int) -> dict:
    """Warm turn latency and cold restore (first turn after a restart) with N stored messages.

    Each size has a workspace of its own, holding only its own conversations: a turn's checkpoint
    walks and message counts cover the whole session storage, so in a shared workspace the small
    sizes would pay for the large ones' files and the ratio would flatter. Every turn adds two
    messages. Above the window, memory stays between WINDOW and WINDOW + STEP however many are
    stored; below it, memory grows, so small sizes spread their warm turns over several
    conversations of that size, 5 turns each, to keep memory near N.
    """
    from agent.conversation.window import WINDOW

    plan = {size: (1 if size >= WINDOW else math.ceil(samples / 5)) for size in sizes}
    rows, scans = {}, {}
    for size, conversations in plan.items():
        (own := workspace / f"history-{size}").mkdir()
        agent = AgentProcess(own, plan=PLAN)
        agent.start()
        for c in range(conversations):  # each "hi" turn stores two messages: prompt and answer
            for _ in range(size // 2):
                agent.invoke("hi", conversation_id=f"h{size}-{c}")
        agent.stop()
        rows[size] = _warm_turns(agent, size, conversations, samples)
        scans[size] = _history_scans(agent.workspace, f"h{size}-0")
    small, large = rows[sizes[0]], rows[sizes[-1]]
    return {
        "by_messages": rows,
        "warm_ratio_largest_vs_smallest": large["warm_turn_p50_ms"] / small["warm_turn_p50_ms"],
        "warm_cpu_ratio_largest_vs_smallest": large["warm_turn_cpu_ms"] / small["warm_turn_cpu_ms"],
        "cold_restore_largest_ms": large["cold_restore_turn_ms"],
        "history_scans": scans,
        "breakdown": turn_breakdown(
            (small["messages_in_memory"][0], large["messages_in_memory"][1]), max(samples, 30)
        ),
        "targets": "warm largest <= 1.15 x smallest; cold restore of 1,000 <= 300 ms",
    }


def _warm_turns(agent: AgentProcess, size: int, conversations: int, samples: int) -> dict:
    """Restart the agent, then: a cold restore turn, and `samples` warm turns over the conversations."""
    agent.start()
    agent.invoke("warm up the process", conversation_id="other")  # the model and imports, not the restore
    cold = timed(lambda: agent.invoke("hi", conversation_id=f"h{size}-0"))
    warm, in_memory, cpu = [], [], 0.0
    for c in range(conversations):
        if c:
            agent.invoke("hi", conversation_id=f"h{size}-{c}")  # its restore: not a warm turn
        cpu_before = _cpu_s(agent.proc.pid)
        for _ in range(samples // conversations):
            started = time.perf_counter()
            answer = agent.invoke("hi", conversation_id=f"h{size}-{c}").json()
            warm.append(time.perf_counter() - started)
            in_memory.append(answer["history"]["messages_before"])
        cpu += _cpu_s(agent.proc.pid) - cpu_before
    agent.stop()
    return {
        "cold_restore_turn_ms": 1000 * cold,
        "warm_turn_p50_ms": 1000 * percentile(warm, 50),
        "warm_turns": len(warm),
        # The agent's CPU per warm turn: steadier than wall time on a machine others load too.
        "warm_turn_cpu_ms": 1000 * cpu / len(warm),
        "messages_in_memory": [min(in_memory), max(in_memory)],  # what the window keeps, not stored
    }


def _history_scans(workspace: Path, conversation_id: str, repeats: int = 20) -> dict:
    """What a turn's checkpoint does per stored message, outside Strands, timed in this process:
    the workspace walk (it lstats every file under .sessions/ for the usage figure; a turn walks
    twice) and the stored-message count (a listdir of the conversation's messages, twice a turn)."""
    from agent.checkpoints import undo
    from agent.checkpoints.walk import walk

    sessions = workspace / ".sessions"
    last = walk(workspace)

    def cpu_ms(call: Callable[[], object]) -> float:
        started = time.process_time()
        for _ in range(repeats):
            call()
        return 1000 * (time.process_time() - started) / repeats

    return {
        "history_entries": sum(1 for _ in sessions.glob("session_*/**/*")),  # the checkpoints not counted
        "walk_cpu_ms": cpu_ms(lambda: walk(workspace, before=last)),
        "stored_messages_cpu_ms": cpu_ms(lambda: undo.stored_messages(sessions, conversation_id)),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (clock ticks from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def turn_breakdown(in_memory: tuple[int, ...], turns: int) -> dict:
    """Where a warm turn's time goes, by messages held in memory: Strands' deep copies and its tracer.

    In this process, with the service's tools and the scripted model, cProfile on `turns` turns.
    Per turn Strands deep-copies agent.messages (event_loop, streaming._normalize_messages) and the
    tracer JSON-serialises them (tracer._add_event_messages) even with no exporter configured.
    """
    import asyncio
    import copy

    from strands import Agent
    from strands.agent.conversation_manager import NullConversationManager

    from agent.model.scripted import ScriptedModel
    from agent.tools.toolset import make_tools
    from agent.tools.workspace import Workspace

    rows = {}
    for count in sorted(set(in_memory)):
        model = ScriptedModel(PLAN, Path(tempfile.gettempdir()))
        history = []
        for i in range(count // 2):  # the shape the service stores: the snapshot + prompt, then the answer
            history.append({"role": "user", "content": [{"text": "Workspace: (empty)"}, {"text": f"hi {i}"}]})
            history.append({"role": "assistant", "content": [{"text": f"echo: hi {i} ({2 * i} messages)"}]})
        agent = Agent(
            model=model,
            tools=make_tools(Workspace(Path(tempfile.gettempdir())), 120, 20_000, {}),
            conversation_manager=NullConversationManager(),
            callback_handler=None,
        )
        profile, total = cProfile.Profile(), 0.0
        for _ in range(turns):
            agent.messages = copy.deepcopy(history)  # the same memory before every turn
            started = time.perf_counter()
            profile.runcall(asyncio.run, agent.invoke_async("hi"))  # this thread: cProfile sees it
            total += time.perf_counter() - started
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        rows[count] = {
            "turn_ms_profiled": 1000 * total / turns,
            "deepcopy_ms": _cumulative_ms(stats, "copy.py", "deepcopy") / turns,
            "tracer_messages_ms": _cumulative_ms(stats, "telemetry/tracer.py", "_add_event_messages") / turns,
        }
    return {"by_messages_in_memory": rows, "turns": turns, "note": "in-process, under cProfile (slower)"}


def _cumulative_ms(stats: dict, filename_end: str, name: str) -> float:
    """Cumulative time of a function in a cProfile run (recursion counted once)."""
    return 1000 * sum(v[3] for k, v in stats.items() if k[0].endswith(filename_end) and k[2] == name)
