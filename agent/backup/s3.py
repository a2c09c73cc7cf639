"""Backups: every checkpoint pushed to S3, so a session's work outlives a storage reset.

Keys (docs/CONTRACT.md §6) live under `v1/<sha256("agentcore-backup:" + runtime session id)>/`:
file contents as `objects/<sha256>` or, when small, inside `packs/<sha256>` (see
transfer.py), then the manifests on this storage's branch, its branch record, then
`latest.json` (agent/backup/chain.py: a push never rewrites what another storage wrote, and the
history only grows), in that order, so whatever latest.json names is complete. The execution role has no
s3:ListBucket: a prefix is reachable only by someone who knows the session id, and a
restore never lists, it GETs what latest.json names. The conversation (`.sessions/session_*/`,
which checkpoints do not copy) is pushed too, in the `history` map of the newest manifest.
What was pushed is remembered in `.sessions/.checkpoints/backup.json`, and which objects went
where in `backup-objects.jsonl` beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from agent.backup import chain, files, placement
from agent.backup.chain import Point
from agent.backup.files import DamagedBackup, Store
from agent.backup.manifests import make_whole, s3_form
from agent.backup.reports import BackupError, BusyTracker, MissingReport, PushReport, RestoreReport
from agent.backup.state import STATE_FILE, PushedState
from agent.backup.transfer import NOT_THERE, Transfer, error_code, s3_client

log = logging.getLogger(__name__)

KEY_VERSION = "v1"
# An object still in use is PUT again once it is this old, so the bucket's expiry rule
# (cloud/backup_bucket.py: more than this + 14 idle days) never removes what a manifest needs.
REFRESH_AFTER_DAYS = 30
REFRESH_S = REFRESH_AFTER_DAYS * 86400
RESTORING_FILE = "backup-restore.json"  # present while a restore runs; removed last
REFUSED_FILE = "backup-refused.json"  # a backup no restore can use: why, kept for the owner to read
SAVE_EVERY_S = 2.0  # during a long upload, what is uploaded is saved this often (else once, at the end)
# Turns in quick succession push at most this often, several checkpoints at once; the first push
# after a quiet spell starts at once, and a stop cuts the wait short (wait()).
PUSH_EVERY_S = 1.0


def prefix(session_id: str, scope: str | None = None) -> str:
    """The key prefix of a session's backups: `v2/<scope>/<digest of the session id>` under the
    runtime's BACKUP_SCOPE (one per runtime's life: a re-created runtime of the same name has
    another, so it never restores a deleted one's backups); `v1/<digest>` without one."""
    digest = hashlib.sha256(f"agentcore-backup:{session_id}".encode()).hexdigest()
    return f"v2/{scope}/{digest}" if scope else f"{KEY_VERSION}/{digest}"


class S3Backup:
    """A session's checkpoints in one bucket. One per process; the boto3 client is made on first use."""

    def __init__(
        self, bucket: str, client: Any = None, region: str | None = None, scope: str | None = None
    ) -> None:
        self.bucket, self.scope = bucket, scope
        self._client, self._region = client, region
        self._guard = threading.Lock()
        self._running = self._again = False
        self._idle, self._flush = threading.Event(), threading.Event()  # no push runs; push now
        self._last = -PUSH_EVERY_S  # when the last push began (monotonic)
        self._idle.set()
        self._pushed = PushedState(bucket)
        self._checked: set[Path] = set()  # workspaces whose session has no backup (asked once a process)

    @classmethod
    def from_bucket(
        cls, bucket: str | None, region: str | None = None, scope: str | None = None
    ) -> S3Backup | None:
        """None when no bucket is set (BACKUP_BUCKET unset): checkpoints then stay in session storage."""
        return cls(bucket, region=region, scope=scope) if bucket else None

    def client(self) -> Any:
        """The boto3 client, made once: by the warm-up (agent/service/warmup.py) before the first call,
        else by it."""
        with self._guard:
            if self._client is None:
                self._client = s3_client(self._region)
        return self._client

    def transfer(self, session_id: str) -> Transfer:
        return Transfer(self.client(), self.bucket, prefix(session_id, self.scope))

    # --- push ---------------------------------------------------------------------------------------

    def start_backup(self, app: BusyTracker, workspace: Path, session_id: str | None) -> Any:
        """Push in a thread while /ping says HealthyBusy; returns it (None if one already runs or
        waits: that one pushes again, so no checkpoint is left behind). Within PUSH_EVERY_S of the
        last push it first waits, so turns in quick succession share one."""
        if not session_id:
            return None
        with self._guard:
            if self._running:
                self._again = True
                return None
            self._running = True
            self._idle.clear()
        task = app.add_async_task("backup", {"bucket": self.bucket})
        tag = prefix(session_id, self.scope)[-8:]

        def run() -> None:
            try:
                while True:  # a push soon after the last one waits, gathering the turns meanwhile
                    self._flush.wait(max(0.0, self._last + PUSH_EVERY_S - time.monotonic()))
                    with self._guard:
                        self._again, self._last = False, time.monotonic()
                    try:
                        self.push(workspace, session_id)
                    except BackupError as error:
                        log.warning("backup=<%s> | push failed: %s", tag, error)
                    except Exception:  # a bug: say so in the log, keep the session serving
                        log.exception("backup=<%s> | push failed unexpectedly", tag)
                    with self._guard:
                        if not self._again:
                            break
            finally:
                with self._guard:
                    self._running = False
                    self._idle.set()
                app.complete_async_task(task)

        thread = threading.Thread(target=run, name="backup", daemon=True)
        thread.start()
        return thread

    def wait(self, timeout: float) -> bool:
        """Block until no push runs, at most `timeout` seconds: a stop lets the last upload finish."""
        self._flush.set()  # from now on, every push starts at once
        return self._idle.wait(timeout)

    def push(self, workspace: Path, session_id: str) -> PushReport:
        """Upload the checkpoints not yet in S3: their new objects, then each manifest, then the
        branch record, then latest.json."""
        started, report = time.perf_counter(), PushReport()
        store, transfer = Store(workspace), self.transfer(session_id)
        state = self._pushed.load(store, transfer.prefix)
        if (store.root / RESTORING_FILE).exists():  # not restored yet: pushing now would fork needlessly
            return report
        pending = store.manifests(after=state["pushed_seq"])  # only these are read: a manifest can be MBs
        if not pending:
            return report
        now = time.time()
        known = state["objects"]

        def fresh(sha: str) -> bool:
            return sha in known and known[sha][0] >= now - REFRESH_AFTER_DAYS * 86400

        saved = [time.monotonic()]

        def done(locations: dict, size: int) -> None:
            known.update({sha: [now, loc] for sha, loc in locations.items()})
            report.bytes += size
            if time.monotonic() - saved[0] > SAVE_EVERY_S:  # a long upload keeps its progress
                self._pushed.save(store, state)
                saved[0] = time.monotonic()

        more = False
        try:
            chain.ensure_branch(
                state, store.seqs(), lambda: self.get_json(transfer, "latest.json", True), now
            )
            branch, room = state["branch"], chain.MAX_LISTED - len(state["listed"])
            more, pending = len(pending) > room, pending[:room]  # the rest on a new branch, at once
            history, cache, blobs = files.history_files(workspace, state["history"], fresh)
            needs = {m["seq"]: _shas(m["files"].values()) for m in pending}
            needs[pending[-1]["seq"]] |= _shas(history.values())
            wanted = set().union(*needs.values())
            sources = {s: blobs[s] if s in blobs else store.object_path(s) for s in wanted if not fresh(s)}
            report.requests = transfer.upload(sources, done)  # every object first, in as few packs as fit
            for manifest in pending:
                last = manifest is pending[-1]
                body = s3_form(store, state, manifest, needs[manifest["seq"]], set(sources), now, REFRESH_S)
                if last:
                    body["history"] = history
                transfer.put(chain.manifest_key(Point(branch, manifest["seq"])), files.json_bytes(body))
                state["pushed_seq"] = manifest["seq"]
                state["listed"].append(chain.summary(manifest))
                report.manifests.append(manifest["seq"])
                if not last:  # the last is saved below: a kill before that only repeats a PUT
                    self._pushed.save(store, state)
            chain.put_head(transfer.put, state, store.seqs(), now)
        except (OSError, BackupError, *_errors()) as error:
            state["last_error"] = f"{type(error).__name__}: {error}"
            self._pushed.save(store, state)
            raise BackupError(
                f"push to s3://{self.bucket} stopped: {error}; the next turn retries"
            ) from error
        state.update(history=cache, last_push=now, last_error=None)
        self._pushed.save(store, state)
        report.seconds = time.perf_counter() - started
        if more:
            again = self.push(workspace, session_id)
            report.manifests += again.manifests
            report.requests, report.bytes = report.requests + again.requests, report.bytes + again.bytes
        return report

    # --- restore ------------------------------------------------------------------------------------

    def restore_if_empty(self, workspace: Path, session_id: str | None) -> RestoreReport | None:
        """When the storage holds no checkpoint (new, or reset by a new version or 14 idle days,
        whatever an exec wrote into it meanwhile) and a backup exists: bring back files and
        conversation, placing only what is absent (a file there now is kept, and reported).
        Called at the mount (agent/service/mount_watch.py) and before any request; resumes a restore a
        kill cut short (the marker is written before the first request to S3)."""
        store = Store(workspace)
        marker = store.root / RESTORING_FILE
        if not session_id or workspace in self._checked:
            return None
        if not marker.exists() and (store.seqs() or (store.root / REFUSED_FILE).exists()):
            return None
        started, transfer = time.perf_counter(), self.transfer(session_id)
        # What the marker's write creates goes again when there is no backup: a new session's storage
        # stays as the platform gave it (an exec's `ls -A` finds it empty).
        made = [d for d in (store.root.parent, store.root) if not d.exists()]
        try:
            files.write_json(marker, {"started": time.time()})
            latest = self.get_json(transfer, "latest.json", missing_ok=True)
            if latest is None:
                marker.unlink(missing_ok=True)
                for directory in reversed(made):
                    with contextlib.suppress(OSError):  # something else wrote there meanwhile: keep it
                        directory.rmdir()
                self._checked.add(workspace)
                return None
            head, kept = chain.read_latest(latest)
            files.write_json(marker, {"checkpoint": head.id, "started": time.time()})
            got: dict[str | None, dict[int, dict]] = {}

            def whole(point: Point, required: bool = False) -> dict | None:
                on_branch = got.setdefault(point.branch, {})

                def fetch(seq: int) -> dict | None:
                    return self.get_json(transfer, chain.manifest_key(Point(point.branch, seq)), True)

                if required and point.seq not in on_branch:
                    on_branch[point.seq] = self.get_json(transfer, chain.manifest_key(point)) or {}
                return on_branch[point.seq] if make_whole(fetch, on_branch, point.seq) else None

            top = whole(head, required=True)
            if top is None:
                raise DamagedBackup(f"checkpoint {head.id} names a base that is not in the backup")
            history = top.pop("history", {})
            older = {p.seq: p for p in kept if p.seq < head.seq}  # one per seq: they become local manifests
            manifests = [m for p in sorted(older.values(), key=lambda p: p.seq) if (m := whole(p))]
            needs = []  # (manifest, {sha: location}) oldest first, the head last
            for m in (*manifests, top):
                m.pop("history", None)
                locations = m.pop("locations", {})
                shas = files.check_manifest(m["files"], history if m is top else {})
                needs.append((m, {sha: locations.get(sha) for sha in shas}))
            store.staging(clear=True)
            downloaded, stamps = transfer.download(store, _absent(store, needs[-1][1]))
            # Older checkpoints (for undo) are best effort: an object only they use may have expired.
            older_needs = {sha: loc for _, need in needs[:-1] for sha, loc in need.items()}
            more, older_stamps = transfer.download(store, _absent(store, older_needs), missing_ok=True)
            # Never over what is there: an exec may have written it since the mount (a rerun's own
            # earlier placements are kept too: the same bytes).
            written, kept_paths = placement.materialize(
                store, top["files"], list(top["files"]), dir_modes=True
            )
            placement.materialize_history(store, history)
            complete = [(m, need) for m, need in needs if not _absent(store, need)]
            for m, _ in complete:
                store.write_manifest(m)
            state = self._pushed.load(store, transfer.prefix)
            origins = {str(p.seq): p.branch for p in (*older.values(), head)}
            state.update(
                pushed_seq=head.seq, history={}, last_error=None, restored=head.to_json(),
                origins=origins, branch=None, listed=[], chain=None,
            )  # fmt: skip
            stamps |= older_stamps
            for _, need in complete:
                state["objects"].update({sha: [stamps.get(sha, 0.0), loc] for sha, loc in need.items()})
            self._pushed.save(store, state)
            marker.unlink()  # last: until here a rerun resumes
        except (DamagedBackup, KeyError, TypeError, ValueError, RecursionError) as error:
            # No rerun can restore this backup: set it aside, say why, and let the turn go on.
            reason = f"backup refused: {error}"[:500]
            files.write_json(store.root / REFUSED_FILE, {"reason": reason, "time": time.time()})
            marker.unlink(missing_ok=True)
            log.warning("backup | %s", reason)
            return RestoreReport("", 0, 0, 0, None, time.perf_counter() - started, refused=reason)
        except (OSError, BackupError, *_errors()) as error:
            raise BackupError(
                f"restore from s3://{self.bucket} stopped: {error}; the next call resumes it"
            ) from error
        entries = top["files"]
        return RestoreReport(
            checkpoint=f"{head.seq:06d}",  # its id in the store here too
            point=head.id,
            files=sum(1 for p in written if entries[p]["type"] == "file"),
            bytes=sum(e.get("size", 0) for e in [*entries.values(), *history.values()]),
            downloaded_bytes=downloaded + more,
            messages=top.get("messages"),
            seconds=time.perf_counter() - started,
            kept=tuple(p for p in kept_paths if entries[p]["type"] != "dir"),
        )

    def restore_missing(self, workspace: Path, session_id: str | None, missing: list[str]) -> MissingReport:
        """Bring back entries missing against the last manifest, from the store or else the backup.
        Whatever is at a path now is newer than the manifest and stays as it is."""
        store = Store(workspace)
        seqs = store.seqs()
        last = store.manifests(after=seqs[-2] if len(seqs) > 1 else -1)
        entries = last[-1]["files"] if last else {}
        chosen = {p: entries[p] for p in missing if p in entries}
        try:
            shas = files.check_manifest(chosen, {})
            absent = [sha for sha in shas if not store.object_path(sha).exists()]
            if absent and session_id:
                known = self._pushed.load(store, prefix(session_id, self.scope))["objects"]
                wanted = {sha: known[sha][1] for sha in absent if sha in known}  # what was pushed, and where
                self.transfer(session_id).download(store, wanted, whole_packs=False, missing_ok=True)
            present = [
                p for p, e in chosen.items() if e["type"] != "file" or store.object_path(e["sha256"]).exists()
            ]
            restored, kept = placement.materialize(store, entries, only=present)
        except (OSError, *_errors()) as error:
            raise BackupError(f"could not restore missing files from s3://{self.bucket}: {error}") from error
        return MissingReport(restored, kept, sorted(set(missing) - set(restored) - set(kept)))

    @staticmethod
    def get_json(transfer: Transfer, key: str, missing_ok: bool = False) -> dict | None:
        try:
            return transfer.get_json(key)
        except _errors() as error:
            code = error_code(error)
            if missing_ok and code in NOT_THERE:
                # Without s3:ListBucket S3 answers a missing key with 403, so 403 usually means "no backup"
                log.info("backup | no %s (S3 said %s)", key, code)
                return None
            if code in NOT_THERE:
                raise BackupError(f"{key} is not in the backup (S3 said {code})") from error
            raise

    # --- state --------------------------------------------------------------------------------------

    def status(self, workspace: Path) -> dict[str, Any]:
        """The backup state for `client.py status`: bucket, last checkpoint pushed, when, last error."""
        state = files.read_json(Store(workspace).root / STATE_FILE) or {}
        return {"bucket": self.bucket, **{k: state.get(k) for k in ("pushed_seq", "last_push", "last_error")}}


def _absent(store: Store, wanted: dict[str, Any]) -> dict[str, Any]:
    return {sha: loc for sha, loc in wanted.items() if not store.object_path(sha).exists()}


def _shas(entries: Any) -> set[str]:
    return {e["sha256"] for e in entries if e.get("type") == "file"}


def _errors() -> tuple[type[Exception], ...]:
    """What S3 calls raise; botocore is imported on first use (it costs the agent's cold start)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, DamagedBackup)


s3_errors = _errors  # for the modules beside this one that call S3 through it
