"""make bench cannot rot: a smoke run of every section, on tiny sizes, must produce the whole table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.bench import QUICK, render
from tests.support import REPO

SECTIONS = (
    "machine",
    "cold_start",
    "turn_overhead",
    "history_growth",
    "stop_resume",
    "scale",
    "workspace_size",
    "checkpoints",
    "disk",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench.py"), "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=480,  # a loaded 2-core machine took 326 s; alone it takes about 100 s
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| 6 | file hashes after resume |" in done.stdout
    return json.loads(out.read_text())


def test_quick_bench_writes_every_section(smoke: dict) -> None:
    assert set(SECTIONS) <= smoke.keys()
    assert smoke["turn_overhead"]["direct"]["n"] == QUICK.turns
    assert set(smoke["scale"]["by_sessions"]) == {str(n) for n in QUICK.scale}


def test_quick_bench_figures_are_sane(smoke: dict) -> None:
    """Not targets (a smoke run on a busy machine proves nothing about speed): that it measured."""
    assert smoke["cold_start"]["ratio"] > 0
    assert smoke["turn_overhead"]["proxy_boto3"]["p50_ms"] > 0
    assert smoke["stop_resume"]["history_kept"] is True
    assert smoke["workspace_size"]["files"] == QUICK.files
    assert smoke["workspace_size"]["files_changed_or_missing"] == 0
    assert all(row["errors"] == 0 for row in smoke["scale"]["by_sessions"].values())


def test_the_table_renders_from_the_json_with_a_row_per_section(smoke: dict) -> None:
    rows = [line for line in render(smoke).splitlines() if line.startswith("| ") and "---" not in line]
    assert {line.split("|")[1].strip() for line in rows[1:]} == {str(n) for n in range(1, 11)}


def test_the_checkpoint_section_measured_every_figure(smoke: dict) -> None:
    c = smoke["checkpoints"]
    assert c["files"] >= QUICK.files and c["checkpoints_kept"] > 1
    assert c["checkpoint_after_10_changed_p50_ms"] > 0 and c["undo_one_turn_p50_ms"] > 0
    assert c["first_checkpoint_after_npm_install_s"] > 0 and c["store_share_of_workspace_on_disk"] > 0
