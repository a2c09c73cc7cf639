"""Bad input through boto3 and raw HTTP to agentcore_local: every kind gets a clear 4xx in AWS's shape
(`x-amzn-ErrorType`; the agent's own message when the agent refused it), and the server still
serves a normal turn afterwards. Complements test_local_runtime_e2e's session-id, ARN and
qualifier cases, which go through boto3 only."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from agentcore_local.api import protocol
from tests.support.faults import new_id, reliability_runtime
from tests.support.local_runtime import LocalRuntime, invoke

HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
GHOST_ARN = "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/ghost-AAAAAAAAAA"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with reliability_runtime(tmp_path_factory.mktemp("bad-input")) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def session(local: LocalRuntime) -> str:
    """One warm session for the whole table: each row is followed by a normal turn in it."""
    return new_id("table")


@dataclass
class Probe:
    """Where to send a bad request: boto3 (client-side checks off) or raw HTTP, and the session."""

    local: LocalRuntime
    session: str

    @property
    def arn(self) -> str:
        return self.local.default_arn

    def boto(self):
        config = Config(parameter_validation=False, retries={"total_max_attempts": 1}, read_timeout=60)
        return boto3.client(
            "bedrock-agentcore", endpoint_url=self.local.url, region_name="us-west-2", config=config
        )

    def path(self, operation: str, arn: str | None = None) -> str:
        return f"{self.local.url}/runtimes/{quote(arn or self.arn, safe='')}/{operation}"

    def post(self, operation: str, body: bytes, session: str | None = None, **headers: str) -> httpx.Response:
        headers = {HEADER: session if session is not None else self.session, **headers}
        return httpx.post(self.path(operation), content=body, headers=headers, timeout=60)


def boto_payload(payload: bytes, **extra: str) -> Callable[[Probe], object]:
    def call(p: Probe) -> object:
        return p.boto().invoke_agent_runtime(
            agentRuntimeArn=p.arn, runtimeSessionId=p.session, payload=payload, **extra
        )

    return call


def http_invoke(body: bytes, **headers: str) -> Callable[[Probe], object]:
    return lambda p: p.post("invocations", body, **headers)


def boto_exec(body: dict) -> Callable[[Probe], object]:
    return lambda p: p.boto().invoke_agent_runtime_command(
        agentRuntimeArn=p.arn, runtimeSessionId=p.session, body=body
    )


def raw_socket(head: str, body: bytes, close_early: bool = False) -> Callable[[Probe], object]:
    """HTTP/1.1 by hand: what a client that lies about its body sends. Returns (status, headers, body)."""

    def call(p: Probe) -> object:
        host, port = p.local.url.removeprefix("http://").split(":")
        path = p.path("invocations").removeprefix(p.local.url)
        request = (
            head.format(path=path, session=p.session, host=f"{host}:{port}").replace("\n", "\r\n").encode()
            + body
        )
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request)
            if close_early:
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head_text, _, rest = answer.partition(b"\r\n\r\n")
        lines = head_text.decode().split("\r\n")
        status = int(lines[0].split()[1]) if lines[0] else 0
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, rest

    return call


LONG_ID = "x" * 100
CASES: list[tuple[str, Callable[[Probe], object], str, str]] = [
    # (kind, the call, the error type, words the message must hold)
    # -- the payload, refused by the agent (its 400/413 reaches the caller as RuntimeClientError)
    ("non-JSON payload", boto_payload(b"{not json"), "RuntimeClientError", "Invalid JSON"),
    ("invalid UTF-8", boto_payload(b"\xff\xfe{"), "RuntimeClientError", "(400)"),
    ("truncated JSON", boto_payload(b'{"prompt": "hel'), "RuntimeClientError", "Invalid JSON"),
    ("a JSON list", boto_payload(b'["prompt"]'), "RuntimeClientError", "JSON object"),
    ("JSON null", boto_payload(b"null"), "RuntimeClientError", "JSON object"),
    ("empty payload", boto_payload(b""), "RuntimeClientError", "(400)"),
    ("no prompt", boto_payload(b"{}"), "RuntimeClientError", '"prompt" is required'),
    ("empty prompt", boto_payload(b'{"prompt": ""}'), "RuntimeClientError", '"prompt" is required'),
    ("blank prompt", boto_payload(b'{"prompt": " \\n "}'), "RuntimeClientError", '"prompt" is required'),
    ("number prompt", boto_payload(b'{"prompt": 42}'), "RuntimeClientError", '"prompt" is required'),
    ("list prompt", boto_payload(b'{"prompt": ["hi"]}'), "RuntimeClientError", '"prompt" is required'),
    (
        "huge prompt",
        boto_payload(json.dumps({"prompt": "x" * 100_001}).encode()),
        "RuntimeClientError",
        "limit is 100000",
    ),
    (
        "conversation id ../x",
        boto_payload(b'{"prompt": "hi", "conversation_id": "../x"}'),
        "RuntimeClientError",
        '"conversation_id"',
    ),
    (
        "conversation id of 200 characters",
        boto_payload(json.dumps({"prompt": "hi", "conversation_id": "c" * 200}).encode()),
        "RuntimeClientError",
        '"conversation_id"',
    ),
    (
        "empty conversation id",
        boto_payload(b'{"prompt": "hi", "conversation_id": ""}'),
        "RuntimeClientError",
        '"conversation_id"',
    ),
    (
        "session_id alias with a slash",
        boto_payload(b'{"prompt": "hi", "session_id": "a/b"}'),
        "RuntimeClientError",
        '"conversation_id"',
    ),
    (
        "stream not a bool",
        boto_payload(b'{"prompt": "hi", "stream": "yes"}'),
        "RuntimeClientError",
        '"stream"',
    ),
    (
        "wrong content type (form-encoded)",
        http_invoke(b"prompt=hi", **{"Content-Type": "application/x-www-form-urlencoded"}),
        "RuntimeClientError",
        "Invalid JSON",
    ),
    # -- the session id, refused by agentcore_local itself
    (
        "session id of 32 characters",
        lambda p: p.post("invocations", b"{}", session="s" * 32),
        "ValidationException",
        "length 32 at 'runtimeSessionId'",
    ),
    (
        "session id of 257 characters",
        lambda p: p.post("invocations", b"{}", session="s" * 257),
        "ValidationException",
        "length 257 at 'runtimeSessionId'",
    ),
    (
        "session id with slashes",
        lambda p: p.post("invocations", b"{}", session=f"a/b/{LONG_ID}"),
        "ValidationException",
        "'/'",
    ),
    (
        "session id ../ through boto3",
        lambda p: p.boto().invoke_agent_runtime(
            agentRuntimeArn=p.arn, runtimeSessionId=f"../../{LONG_ID}", payload=b"{}"
        ),
        "ValidationException",
        "runtimeSessionId",
    ),
    (
        "no session id",
        lambda p: p.post("invocations", b"{}", session=""),
        "ValidationException",
        "runtimeSessionId",
    ),
    # -- the runtime and the operation
    (
        "unknown ARN (raw HTTP)",
        lambda p: httpx.post(p.path("invocations", GHOST_ARN), content=b"{}", headers={HEADER: p.session}),
        "ResourceNotFoundException",
        "ghost-AAAAAAAAAA",
    ),
    (
        "unknown operation",
        lambda p: httpx.post(p.path("teleport"), content=b"{}", headers={HEADER: p.session}),
        "UnknownOperationException",
        "no operation",
    ),
    (
        "wrong method",
        lambda p: httpx.get(p.path("invocations"), headers={HEADER: p.session}),
        "UnknownOperationException",
        "no operation",
    ),
    (
        "stop of an unknown session",
        lambda p: p.boto().stop_runtime_session(agentRuntimeArn=p.arn, runtimeSessionId=new_id("never")),
        "ResourceNotFoundException",
        "not found",
    ),
    (
        "stop with a non-JSON body",
        lambda p: p.post("stopruntimesession", b"{oops"),
        "ValidationException",
        "not JSON",
    ),
    # -- InvokeAgentRuntime's header and query members, held to the model's limits (issue 10)
    *[
        (
            f"{header} of {size} characters",
            http_invoke(b'{"prompt": "hi"}', **{header: "a" * size}),
            "ValidationException",
            f"length {size}",
        )
        for header, size in [
            ("Content-Type", 257),
            ("Accept", 257),
            ("Mcp-Session-Id", 1025),
            ("X-Amzn-Bedrock-AgentCore-Runtime-User-Id", 1025),
            ("X-Amzn-Trace-Id", 129),
            ("traceparent", 129),
            ("tracestate", 513),
        ]
    ],
    (
        "accountId not 12 digits",
        lambda p: httpx.post(
            p.path("invocations") + "?accountId=12345", content=b"{}", headers={HEADER: p.session}
        ),
        "ValidationException",
        "accountId",
    ),
    (
        "stop with a clientToken of 32 characters",
        lambda p: p.post("stopruntimesession", json.dumps({"clientToken": "c" * 32}).encode()),
        "ValidationException",
        "clientToken",
    ),
    (
        "stop with a clientToken off its pattern",
        lambda p: p.post("stopruntimesession", json.dumps({"clientToken": "_" * 40}).encode()),
        "ValidationException",
        "clientToken",
    ),
    # -- InvokeAgentRuntimeCommand
    (
        "exec with an empty command",
        boto_exec({"command": ""}),
        "ValidationException",
        "greater than or equal to 1",
    ),
    (
        "exec with a non-string command",
        boto_exec({"command": ["ls"]}),
        "ValidationException",
        "must be a string",
    ),
    (
        "exec with an oversized command",
        boto_exec({"command": "x" * 65_537}),
        "ValidationException",
        "less than or equal to 65536",
    ),
    ("exec with timeout 0", boto_exec({"command": "ls", "timeout": 0}), "ValidationException", "timeout"),
    (
        "exec with a string timeout",
        boto_exec({"command": "ls", "timeout": "5"}),
        "ValidationException",
        "timeout",
    ),
    (
        "exec with a non-JSON body",
        lambda p: p.post("commands", b"ls -la", **{"Content-Type": "text/plain"}),
        "ValidationException",
        "not JSON",
    ),
    # -- bodies that lie about their size
    (
        "oversized payload (declared)",
        raw_socket(
            "POST {path} HTTP/1.1\nHost: {host}\nX-Amzn-Bedrock-AgentCore-Runtime-Session-Id: {session}\n"
            "Content-Length: 100000001\nConnection: close\n\n",
            b'{"prompt": "',
        ),
        "ValidationException",
        "the limit is 100000000",
    ),
    (
        "truncated body (connection closed early)",
        raw_socket(
            "POST {path} HTTP/1.1\nHost: {host}\nX-Amzn-Bedrock-AgentCore-Runtime-Session-Id: {session}\n"
            "Content-Length: 500\nConnection: close\n\n",
            b'{"prompt": "cut',
            close_early=True,
        ),
        "",
        "",
    ),
]


def error_of(outcome: object) -> tuple[int, str, str]:
    """(status, x-amzn-ErrorType, message) of an answer from any of the three transports."""
    if isinstance(outcome, ClientError):
        meta = outcome.response["ResponseMetadata"]
        return meta["HTTPStatusCode"], outcome.response["Error"]["Code"], outcome.response["Error"]["Message"]
    if isinstance(outcome, httpx.Response):
        return (
            outcome.status_code,
            outcome.headers.get("x-amzn-ErrorType", ""),
            outcome.json().get("message", ""),
        )
    if isinstance(outcome, tuple):
        status, headers, body = outcome
        message = json.loads(body).get("message", "") if body.strip().startswith(b"{") else ""
        return status, headers.get("x-amzn-errortype", ""), message
    raise AssertionError(f"no error: {outcome!r}")


def test_the_table_has_at_least_25_kinds() -> None:
    assert len({kind for kind, *_ in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize(("kind", "call", "code", "says"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_4xx_in_aws_shape_and_the_server_keeps_serving(
    local: LocalRuntime, session: str, kind: str, call, code: str, says: str
) -> None:
    probe = Probe(local, session)
    try:
        outcome = call(probe)
    except ClientError as error:
        outcome = error
    if code:
        status, error_type, message = error_of(outcome)
        assert 400 <= status < 500, (kind, status, message)
        assert error_type == code, (kind, error_type, message)
        assert says in message, (kind, message)
        assert "Traceback" not in message
    answer = invoke(local.data(), local.default_arn, session, f"still there after {kind}?")
    assert f"still there after {kind}?" in answer["response"]
    in_flight = next(s["inFlight"] for s in local.sessions() if s["runtimeSessionId"] == session)
    assert in_flight == 0  # no bad request left the session counted busy (it would never go idle)


def test_an_oversized_chunked_payload_is_refused_as_it_streams(
    local: LocalRuntime, session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Content-Length to trust: the body is counted as it arrives (the limit lowered to keep it small)."""
    monkeypatch.setattr(protocol, "MAX_PAYLOAD", 1000)
    chunk = b"3e8\r\n" + b"x" * 1000 + b"\r\n"
    send = raw_socket(
        "POST {path} HTTP/1.1\nHost: {host}\nX-Amzn-Bedrock-AgentCore-Runtime-Session-Id: {session}\n"
        "Transfer-Encoding: chunked\nConnection: close\n\n",
        chunk * 3 + b"0\r\n\r\n",
    )
    status, error_type, message = error_of(send(Probe(local, session)))
    assert (status, error_type) == (400, "ValidationException")
    assert "over 1000 bytes" in message
