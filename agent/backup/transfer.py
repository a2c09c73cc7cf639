"""Objects between the checkpoint store and S3, small ones packed together, every one verified by its hash.

A node_modules tree is hundreds of small files; one request each would make a restore cost
a round trip per file. So objects under ALONE_BYTES travel in packs (`packs/<sha256 of the
pack>`: the objects' bytes one after another) and larger ones alone (`objects/<sha256>`).
Where each packed object sits is a location `[pack, offset, size]`, kept in backup.json and
written into every manifest pushed, so a restore knows what to GET without listing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.backup.files import DamagedBackup, Store, parse_json
from agent.rehearsal import answered_in_process

ALONE_BYTES = 1 << 20  # objects this big go alone; smaller ones into packs
PACK_BYTES = 1 << 20  # a pack is closed once it holds this much: several packs restore in parallel
WORKERS = 16
ROUND = 4 * WORKERS  # requests per round; after each the caller saves what is uploaded

NOT_THERE = {"NoSuchKey", "404", "NotFound", "AccessDenied", "403"}  # without ListBucket, S3 says 403
Location = list  # [pack sha256, offset, size], or None for an object stored alone
Source = Path | bytes


def _read(source: Source) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else os.stat(source).st_size


def _packs(small: list[tuple[str, Source]]) -> Iterator[tuple[bytes, dict[str, Location]]]:
    body, members = bytearray(), {}
    for sha, source in small:
        data = _read(source)
        members[sha] = [len(body), len(data)]
        body += data
        if len(body) >= PACK_BYTES:
            yield bytes(body), members
            body, members = bytearray(), {}
    if members:
        yield bytes(body), members


class Transfer:
    """Requests for one session's prefix in one bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def put(self, key: str, body: Any) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=body)

    def get(self, key: str, **extra: Any) -> dict:
        return self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", **extra)

    def get_json(self, key: str) -> dict:
        data = parse_json(self.get(key)["Body"].read())
        if data is None:
            raise DamagedBackup(f"{key} in the backup is not a JSON object")
        return data

    def upload(
        self, sources: dict[str, Source], done: Callable[[dict[str, Location | None], int], None]
    ) -> int:
        """PUT every source (large alone, small in packs); `done(locations, bytes)` after each round."""
        alone, small = [], []
        for sha in sorted(sources):
            (alone if _size(sources[sha]) >= ALONE_BYTES else small).append((sha, sources[sha]))
        requests = 0
        with ThreadPoolExecutor(WORKERS) as pool:
            for start in range(0, len(alone), ROUND):
                batch = alone[start : start + ROUND]
                sizes = list(pool.map(lambda item: self._put_alone(*item), batch))
                done(dict.fromkeys((sha for sha, _ in batch), None), sum(sizes))
                requests += len(batch)
            packs = _packs(small)
            while batch := [pack for _, pack in zip(range(WORKERS // 4 or 1), packs, strict=False)]:
                placed = list(pool.map(lambda pack: self._put_pack(*pack), batch))
                done(
                    {sha: loc for where in placed for sha, loc in where.items()},
                    sum(len(b) for b, _ in batch),
                )
                requests += len(batch)
        return requests

    def _put_alone(self, sha: str, source: Source) -> int:
        if isinstance(source, bytes):
            self.put(f"objects/{sha}", source)
            return len(source)
        with open(source, "rb") as body:  # streamed: a large file is never read into memory whole
            self.put(f"objects/{sha}", body)
            return os.fstat(body.fileno()).st_size

    def _put_pack(self, body: bytes, members: dict[str, Location]) -> dict[str, Location]:
        pack = hashlib.sha256(body).hexdigest()
        self.put(f"packs/{pack}", body)
        return {sha: [pack, offset, size] for sha, (offset, size) in members.items()}

    def download(
        self,
        store: Store,
        wanted: dict[str, Location | None],
        whole_packs: bool = True,
        missing_ok: bool = False,
    ) -> tuple[int, dict[str, float]]:
        """GET objects into the store. whole_packs: one GET per pack; else one range GET per object.
        missing_ok: skip what S3 does not have. Returns the bytes fetched and each object's upload
        time (S3's LastModified)."""
        jobs: dict[str, list] = {}
        for sha, loc in wanted.items():
            key = f"packs/{loc[0]}" if loc and whole_packs else f"object:{sha}"
            jobs.setdefault(key, []).append((sha, loc))
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda job: self._fetch(store, *job, missing_ok), jobs.items()))
        stamps = {sha: when for fetched, when, shas in results for sha in shas}
        return sum(fetched for fetched, _, _ in results), stamps

    def _fetch(self, store: Store, key: str, members: list, missing_ok: bool) -> tuple[int, float, list[str]]:
        from botocore.exceptions import ClientError  # imported on first use: it costs the agent's cold start

        try:
            return self._fetch_now(store, key, members)
        except ClientError as error:
            if missing_ok and error_code(error) in NOT_THERE:
                return 0, 0.0, []
            raise

    def _fetch_now(self, store: Store, key: str, members: list) -> tuple[int, float, list[str]]:
        if key.startswith("packs/"):
            answer = self.get(key)
            body = answer["Body"].read()
            if hashlib.sha256(body).hexdigest() != key.split("/", 1)[1]:
                raise DamagedBackup(f"{key} in the backup does not match its hash")
            for sha, (_, offset, size) in members:
                _store_object(store, sha, body[offset : offset + size])
            return len(body), answer["LastModified"].timestamp(), [sha for sha, _ in members]
        ((sha, loc),) = members
        if loc:
            _, offset, size = loc
            answer = self.get(f"packs/{loc[0]}", Range=f"bytes={offset}-{offset + size - 1}")
        else:
            answer = self.get(f"objects/{sha}")
        return _stream_object(store, sha, answer["Body"]), answer["LastModified"].timestamp(), [sha]


def s3_client(region: str | None) -> Any:
    """The S3 client every transfer of this process uses (AWS_ENDPOINT_URL_S3 is honoured by boto3
    itself). Made once per process: it costs 0.2-0.5 s (boto3's import, the service model, the
    endpoint rules), which agent/service/warmup.py pays before the first call."""
    import boto3
    from botocore.config import Config

    retries = {"mode": "standard", "max_attempts": 5}
    config = Config(max_pool_connections=2 * WORKERS, retries=retries)
    return boto3.client("s3", region_name=region, config=config)


def rehearse(client: Any, bucket: str) -> None:
    """One GetObject answered in this process (NoSuchKey), never sent: it costs no request, and a
    new session's check for its backup, the first real request, finds the client's first-time
    work done (agent/service/warmup.py)."""
    from botocore.exceptions import ClientError

    key = f"agentcore-warm-up/{os.urandom(8).hex()}"
    body = b"<Error><Code>NoSuchKey</Code><Message>warm-up rehearsal</Message></Error>"
    with answered_in_process(client, "before-send.s3.GetObject", key, 404, body):
        try:
            client.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error_code(error) != "NoSuchKey":
                raise


def error_code(error: Exception) -> str:
    return str((getattr(error, "response", None) or {}).get("Error", {}).get("Code", ""))


def _store_object(store: Store, sha: str, data: bytes) -> None:
    if hashlib.sha256(data).hexdigest() != sha:
        raise DamagedBackup(f"object {sha[:12]} in the backup does not match its hash")
    tmp = store.temp_path()
    try:
        tmp.write_bytes(data)
        _rename_into_store(store, tmp, sha)
    finally:
        tmp.unlink(missing_ok=True)


def _stream_object(store: Store, sha: str, body: Any) -> int:
    tmp, digest, size = store.temp_path(), hashlib.sha256(), 0
    try:
        with tmp.open("wb") as out:
            for chunk in body.iter_chunks(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != sha:
            raise DamagedBackup(f"object {sha[:12]} in the backup does not match its hash")
        _rename_into_store(store, tmp, sha)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def _rename_into_store(store: Store, tmp: Path, sha: str) -> None:
    target = store.object_path(sha)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
