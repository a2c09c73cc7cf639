"""What client.py says about an answer, the demo, undo, checkpoints and status: text only.

Pure functions from the runtime's answers to lines; client.py prints them. Kept apart so the
CLI stays a page of commands and the wording can be tested without a terminal.
"""

from __future__ import annotations

import time
from typing import Any

from cloud.demo import DemoResult


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def answer_line(answer: dict[str, Any]) -> str:
    """One line after a turn: history restored, workspace restored, and a restore from backup."""
    history, workspace = answer.get("history", {}), answer.get("workspace", {})
    restored = "yes" if workspace.get("restored") else "no"
    source = ""
    if workspace.get("restored_from") == "backup":
        r = workspace.get("restore") or {}
        source = (
            f"; restored from backup: checkpoint {r.get('checkpoint', '?')}, {r.get('files', '?')} files, "
            f"{r.get('bytes', '?')} bytes in {r.get('seconds', '?')}s"
        )
    return (
        f"[conversation {answer.get('conversation_id')}: "
        f"{history.get('messages_before', '?')} messages of history "
        f"before this turn; workspace restored: {restored}, {workspace.get('entries', '?')} entries{source}]"
    )


def demo_summary(r: DemoResult) -> list[str]:
    def mark(ok: bool) -> str:
        return "OK  " if ok else "FAIL"

    lines = [
        "",
        "Summary",
        f"  {mark(len(r.files) == 2)} files survived the stop: {', '.join(r.files) or 'none'}",
    ]
    lines.append(f"  {mark(r.echo_added)} the resumed turn added POST /echo to index.js")
    if r.packages:
        lines.append(f"  {mark(True)} node_modules survived too: {r.packages} packages")
    else:
        why = "npm install could not reach the npm registry" if r.npm_found else "npm is not installed"
        lines.append(f"  --   no node_modules ({why}); the files above still prove persistence")
    lines += [
        f"  {mark(r.messages_before_resume > 0)} conversation survived: {r.messages_before_resume} "
        "messages of history before the resumed turn",
        f"  {mark(r.restored)} workspace.restored = {str(r.restored).lower()} in the resumed answer",
        f"  stop -> first resumed answer: {r.resume_seconds:.1f}s (stop took {r.stop_seconds:.1f}s; "
        "the seed slept 15 s before even trying)",
        f"  session {r.session} (first turn: {r.first_turn_messages} messages)",
    ]
    return lines


def undo_lines(answer: dict[str, Any]) -> list[str]:
    lines = [answer["response"]]
    for kind, paths in answer.get("files", {}).items():
        if paths:
            shown = ", ".join(paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
            lines.append(f"  {kind}: {shown}")
    return lines


def checkpoint_lines(answer: dict[str, Any]) -> list[str]:
    rows = answer.get("checkpoints", [])
    if not rows:
        return ["no checkpoints yet: the first turn makes one"]
    lines = []
    for c in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.get("time") or 0))
        n = c.get("changed", {})
        files = f"+{n.get('added', 0)} ~{n.get('modified', 0)} -{n.get('deleted', 0)} m{n.get('mode', 0)}"
        label = c.get("prompt") or f"({c.get('kind')})"
        flags = " [undone]" if c.get("undone") else (" [budget]" if c.get("outcome") == "budget" else "")
        lines.append(f"{c['id']}  turn {c.get('turn', '-'):>3}  {when}  {files:<22} {label}{flags}")
    return lines


def backup_checkpoint_lines(answer: dict[str, Any]) -> list[str]:
    """`checkpoints --backup`: the backup's history, newest first, one line each."""
    rows = answer.get("checkpoints", [])
    if not rows:
        return ["no backup for this session yet: the first answered turn makes one"]
    lines = []
    for c in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c["time"])) if c.get("time") else "-" * 19
        label = c.get("prompt") or (f"({c['kind']})" if c.get("kind") else "")
        lines.append(f"{c['id']:<22} {when}  branch {c.get('branch') or 'v1':<15} {label}")
    if answer.get("stopped"):
        lines.append(f"(older history not listed: {answer['stopped']})")
    return lines


def restore_lines(answer: dict[str, Any]) -> list[str]:
    files = answer.get("files", {})
    talk = "; ".join(
        f"conversation {c}: {h.get('messages')} messages" for c, h in answer.get("history", {}).items()
    )
    return [
        f"restored checkpoint {answer.get('restored')}: {len(files.get('restored', []))} restored, "
        f"{len(files.get('deleted', []))} deleted, {len(files.get('mode', []))} modes"
        + (f"; {talk}" if talk else ""),
        f"recorded as checkpoint {answer.get('checkpoint')} (what was there before is a checkpoint too)",
    ]


def status_lines(answer: dict[str, Any]) -> list[str]:
    usage, kept = answer.get("usage", {}), answer.get("checkpoints", {})
    used, quota = usage.get("bytes", 0), usage.get("quota_bytes") or 1
    backup = answer.get("backup", {})
    return [
        f"storage: {mib(used)} of {mib(quota)} ({100 * used / quota:.0f}%), {usage.get('files', 0)} files",
        f"checkpoints: {kept.get('count', 0)} kept (latest {kept.get('latest')}), "
        f"{mib(kept.get('bytes', 0))}; keeps the last {kept.get('keep')} "
        f"within {mib(kept.get('max_bytes', 0))}",
        "backup: "
        + ("on (BACKUP_BUCKET is set)" if backup.get("enabled") else "off (BACKUP_BUCKET is not set)"),
        *_restore_line(backup.get("restore") or {}),
    ]


def _restore_line(restore: dict[str, Any]) -> list[str]:
    if "restore_s" not in restore:
        return []
    return [
        f"restore at the mount: started {restore.get('start_after_mount_s')} s after it, "
        f"took {restore['restore_s']} s" + (f" (failed: {restore['error']})" if restore.get("error") else "")
    ]
