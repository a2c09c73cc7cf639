"""The agent-facing listener's S3 gate, attacked as a session's shell would: raw HTTP with a fake
SigV4 header scoped to s3. The gate authorises the request it forwards (the decoded, rebuilt path),
so no spelling of a path reaches a listing, another bucket, moto's own API or another service."""

from __future__ import annotations

import http.client
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from agentcore_local.services.backups import session_prefix
from agentcore_local.services.listener import IN_SANDBOX_PORT, AgentServices, start_agent_services
from agentcore_local.services.s3_gate import Refused, authorise_s3

BUCKET = "gate-backups"
CREDENTIAL = "AWS4-HMAC-SHA256 Credential=AKID/20261201/{}/aws4_request"
S3_SCOPE = CREDENTIAL.format("us-west-2/s3") + ", SignedHeaders=host, Signature=0"
P = session_prefix("runtime_a-0123456789", "session-a")  # a session's own prefix: v2/SCOPE/DIGEST


def fresh_prefix() -> str:
    return session_prefix(f"scope-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)


@pytest.fixture(scope="module")
def services() -> Iterator[AgentServices]:
    state = Path(tempfile.mkdtemp(prefix="gate-", dir="/tmp"))  # short: a unix socket's path is limited
    running = start_agent_services(state, None, "us-west-2", backup_bucket=BUCKET)
    yield running
    running.close()
    shutil.rmtree(state)


@pytest.fixture
def planted(services: AgentServices) -> str:
    """An object of another session, put through moto directly (the host side)."""
    key = f"{fresh_prefix()}/latest.json"
    host_side(services).put_object(Bucket=BUCKET, Key=key, Body=b'{"seq": 7}')
    return key


def host_side(services: AgentServices):
    return boto3.client("s3", endpoint_url=services.s3_url, region_name="us-west-2")


def session_s3(services: AgentServices):
    return boto3.client(
        "s3",
        endpoint_url=services.tcp_url,
        region_name="us-west-2",
        config=Config(retries={"total_max_attempts": 1}),
    )


@dataclass
class Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def raw(services: AgentServices, method: str, target: str, **headers: str) -> Answer:
    """A request sent byte for byte as written (httpx would normalise `..` in any URL it builds)."""
    url = httpx.URL(services.tcp_url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in {"Authorization": S3_SCOPE, "Content-Length": "0", **headers}.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Answer(response.status, response.read())
    finally:
        connection.close()


def test_a_session_reads_and_writes_objects_under_its_prefix_through_boto3(services: AgentServices) -> None:
    s3, key = session_s3(services), f"{fresh_prefix()}/objects/a b+c%.bin"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"\x00\x01payload")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"\x00\x01payload"
    assert host_side(services).head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 9  # the same key
    s3.create_multipart_upload(Bucket=BUCKET, Key=key)  # POST ?uploads is PutObject too
    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
    assert httpx.get(presigned).content == b"\x00\x01payload"
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=BUCKET, Key=f"{P}/missing")


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", f"/{BUCKET}/{P}/.."),  # ListObjects of the whole bucket, once normalised
        ("GET", f"/{BUCKET}/{P}/%2e%2e"),
        ("GET", f"/{BUCKET}/{P}/%2E%2E/"),
        ("GET", f"/{BUCKET}/{P}/x/../.."),
        ("GET", f"/{BUCKET}/{P}/./x"),
        ("GET", f"/{BUCKET}/{P}//x"),
        ("GET", f"/{BUCKET}/{P}/x%2f..%2f..%2fy"),
        ("GET", f"/{BUCKET}/{P}/../../moto-api/data.json"),
        ("POST", f"/{BUCKET}/{P}/../../moto-api/reset?uploads"),
        ("POST", f"/{BUCKET}/{P}/%2e%2e/%2e%2e/moto-api/reset?uploads"),
        ("GET", f"/{BUCKET}/{P}/..%5c..%5cmoto-api/data.json"),
        ("GET", "/moto-api/data.json"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", f"/{BUCKET}/{P}"),
        ("GET", f"/{BUCKET}/{P}/"),
        ("GET", f"/{BUCKET}?list-type=2&prefix=v2/"),
        ("GET", f"/other-{BUCKET}/v1/x"),
        ("PUT", f"/{BUCKET}/loot"),
        ("DELETE", f"/{BUCKET}/{P}/x/latest.json"),
        ("GET", f"/{BUCKET}/{P}/x?acl"),
        ("GET", f"/{BUCKET}/{P}/x?tagging"),
        ("GET", f"/{BUCKET}/{P}/x?versions"),
        ("POST", f"/{BUCKET}/{P}/x?delete"),
        ("GET", f"/{BUCKET}/{P}/%ff"),
        ("GET", f"/{BUCKET}/v1/{'0' * 64}/latest.json"),  # the layout before runtime scopes
        ("GET", f"/{BUCKET}/v2/{'0' * 64}/latest.json"),  # no scope segment
        ("GET", f"/{BUCKET}/v2/a%20b/{'0' * 64}/latest.json"),  # a scope that is not one plain segment
        ("GET", f"/{BUCKET}/v2/scope/not-a-digest/latest.json"),
    ],
)
def test_a_path_that_is_not_one_object_of_a_session_prefix_is_refused_however_it_is_spelled(
    services: AgentServices, planted: str, method: str, target: str
) -> None:
    answer = raw(services, method, target)
    assert answer.status_code == 403, answer.text
    assert "AccessDenied" in answer.text
    assert planted.encode() not in answer.content  # no listing leaked
    # Nothing was reset or deleted meanwhile: the other session's object is still there.
    assert host_side(services).get_object(Bucket=BUCKET, Key=planted)["Body"].read() == b'{"seq": 7}'


def test_a_host_that_is_not_the_listeners_own_is_refused(services: AgentServices) -> None:
    """DNS rebinding, and moto's virtual-hosted buckets (taken from Host): neither gets through."""
    key = f"{fresh_prefix()}/x"
    port = httpx.URL(services.tcp_url).port
    for host in (f"{BUCKET}-other.s3.amazonaws.com", f"attacker.example:{port}", f"127.0.0.1:{port + 1}"):
        answer = raw(services, "PUT", f"/{BUCKET}/{key}", Host=host)
        assert answer.status_code == 403 and "DNS rebinding" in answer.text, (host, answer.text)
    with pytest.raises(host_side(services).exceptions.NoSuchKey):
        host_side(services).get_object(Bucket=BUCKET, Key=key)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"127.0.0.1:{IN_SANDBOX_PORT}"):
        assert raw(services, "PUT", f"/{BUCKET}/{key}", Host=host).status_code == 200, host
    converse = httpx.post(
        f"{services.tcp_url}/model/m/converse", json={}, headers={"Host": f"attacker.example:{port}"}
    )
    assert converse.status_code == 403  # nor the model, on the user's API key


@pytest.mark.parametrize(
    "authorization",
    [
        # moto reads the first credential; a regex that skips a malformed one would read the second.
        "AWS4-HMAC-SHA256 Credential=AKID/2026/us-east-1/sts/aws4_request, X="
        + CREDENTIAL.format("us-west-2/s3").split()[1],
        CREDENTIAL.format("us-east-1/sts") + ", SignedHeaders=host, Signature=0",
        CREDENTIAL.format("us-east-1/iam"),
        "AWS4-HMAC-SHA256 nonsense",
    ],
)
def test_a_request_scoped_to_another_service_never_reaches_it(
    services: AgentServices, authorization: str
) -> None:
    answer = raw(
        services,
        "POST",
        "/",
        Authorization=authorization,
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403
    assert "GetCallerIdentity" not in answer.text and "Arn" not in answer.text


def test_sts_is_unreachable_even_with_a_valid_s3_object_path(services: AgentServices) -> None:
    with pytest.raises(ClientError) as caught:
        boto3.client(
            "sts",
            endpoint_url=services.tcp_url,
            region_name="us-west-2",
            config=Config(retries={"total_max_attempts": 1}),
        ).get_caller_identity()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_gate_rebuilds_the_path_it_forwards_from_the_checked_key() -> None:
    wanted = authorise_s3(BUCKET, "GET", f"/{BUCKET}/{P}/ab/c%20d".encode(), b"partNumber=1&X-Amz-Date=1")
    assert wanted.key == f"{P}/ab/c d"
    assert wanted.target() == f"/{BUCKET}/{P}/ab/c%20d?partNumber=1"  # the signing parameters dropped
    with pytest.raises(Refused, match=re.escape("'..'")):
        authorise_s3(BUCKET, "GET", f"/{BUCKET}/{P}/%2E%2e".encode(), b"")
    with pytest.raises(Refused, match="own backup objects"):  # a session's gate: its prefix only
        authorise_s3(BUCKET, "GET", f"/{BUCKET}/{fresh_prefix()}/latest.json".encode(), b"", P)


def test_without_a_backup_bucket_no_s3_is_served(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from agentcore_local.services.listener import create_app

    with TestClient(create_app("http://127.0.0.1:1", None, None)) as http:
        answer = http.get(f"/any/{P}/x", headers={"Authorization": S3_SCOPE})
    assert answer.status_code == 403 and "backups are off" in answer.text


def through(socket_path: Path, method: str, target: str, body: bytes = b"") -> Answer:
    """One request on a compute's own socket (forwarder.py), as its sandbox's agent sends it."""
    import socket

    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:8788\r\nAuthorization: {S3_SCOPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(socket_path))
        sock.sendall(head.encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n\r\n")
    return Answer(int(status.split()[1]), rest)


@pytest.fixture
def two_runtimes(services: AgentServices) -> Iterator[dict[str, tuple[Path, str]]]:
    """A session of runtime A and one of runtime B, each on its compute's socket: name -> (socket, prefix)."""
    assert services.forwarder is not None
    made: dict[str, tuple[Path, str]] = {}
    for name in ("a", "b"):
        compute, session = f"runtime_{name}-{uuid.uuid4().hex[:10]}", f"session-{uuid.uuid4().hex}"
        directory = Path(tempfile.mkdtemp(prefix=f"gate-{name}-", dir="/tmp"))
        path = services.forwarder.open(compute, directory)
        prefix = session_prefix(compute.split("-")[0] + uuid.uuid4().hex[:8], session)
        services.forwarder.limits.attribute(compute, session, prefix)
        made[name] = (path, prefix)
        made[f"compute-{name}"] = (path, compute)
    yield made
    for name in ("a", "b"):
        path, compute = made[f"compute-{name}"]
        services.forwarder.close(compute)
        shutil.rmtree(path.parent, ignore_errors=True)


def test_a_session_of_one_runtime_never_reaches_another_runtimes_backups(
    services: AgentServices, two_runtimes: dict[str, tuple[Path, str]]
) -> None:
    (a_socket, mine), (_, theirs) = two_runtimes["a"], two_runtimes["b"]
    host_side(services).put_object(Bucket=BUCKET, Key=f"{theirs}/latest.json", Body=b'{"seq": 3}')
    assert through(a_socket, "PUT", f"/{BUCKET}/{mine}/latest.json", b'{"seq": 1}').status_code == 200
    assert through(a_socket, "GET", f"/{BUCKET}/{mine}/latest.json").content == b'{"seq": 1}'
    scope, digest = theirs.split("/")[1:]
    for method, target in [
        ("GET", f"/{BUCKET}/{theirs}/latest.json"),  # knowing the other runtime's whole prefix
        ("HEAD", f"/{BUCKET}/{theirs}/latest.json"),
        ("PUT", f"/{BUCKET}/{theirs}/latest.json"),  # overwriting it
        ("POST", f"/{BUCKET}/{theirs}/latest.json?uploads"),
        ("GET", f"/{BUCKET}/{mine}/../../{scope}/{digest}/latest.json"),  # climbing out of its own
        ("GET", f"/{BUCKET}/{mine}%2f..%2f..%2f{scope}%2f{digest}/latest.json"),
        ("GET", f"/{BUCKET}/{mine.rsplit('/', 1)[0]}/{digest}/latest.json"),  # its scope, their digest
        ("GET", f"/{BUCKET}/{mine}"),  # its prefix itself, as a listing would name it
    ]:
        answer = through(a_socket, method, target, b"x" if method == "PUT" else b"")
        assert answer.status_code == 403, (method, target, answer.text)
    kept = host_side(services).get_object(Bucket=BUCKET, Key=f"{theirs}/latest.json")["Body"].read()
    assert kept == b'{"seq": 3}'


def test_a_compute_that_serves_no_session_yet_reaches_no_backup(services: AgentServices) -> None:
    """A warm pool member: its socket is open, no session has taken it."""
    assert services.forwarder is not None
    compute = f"pool-{uuid.uuid4().hex[:10]}"
    directory = Path(tempfile.mkdtemp(prefix="gate-pool-", dir="/tmp"))
    try:
        path = services.forwarder.open(compute, directory)
        answer = through(path, "GET", f"/{BUCKET}/{P}/latest.json")
        assert answer.status_code == 403 and "no session yet" in answer.text
    finally:
        services.forwarder.close(compute)
        shutil.rmtree(directory, ignore_errors=True)
