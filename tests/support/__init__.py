"""What the tests share: real processes and servers to drive (agent_process, local_runtime, faults)
and the scripted model's test plans (plans/, played by the offline test double)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLANS = Path(__file__).resolve().parent / "plans"
