"""Agents nobody here wrote, deployed as AWS's direct code deployment deploys them (a zip in S3:
the code and its dependencies at the root), through boto3 against agentcore_local, in the same
bwrap sandboxes sessions get: first call, a file written to the mount, stop, resume, the file there.
Skipped where bwrap cannot run or serve may not mount (not root)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from agentcore_local.sandbox.bwrap import bwrap_works
from agentcore_local.sandbox.slots import slots_work
from tests.support.code_zips import code_zip, zip_with_modes
from tests.support.local_runtime import ROLE, LocalRuntime, local_runtime, shell

pytestmark = pytest.mark.skipif(
    os.environ.get("AGENTCORE_LOCAL_TEST_SANDBOX") == "process" or not (bwrap_works() and slots_work()),
    reason="code-zip agents run in bwrap sandboxes, with the mount at the first call (root)",
)
AGENTS = Path(__file__).resolve().parents[2] / "support" / "agents"
BUCKET = "my-agents"

# The AWS guide's MCP server (runtime-mcp), on the mcp package installed here: mcp 2 renamed
# FastMCP to MCPServer and moved host/port/stateless_http to run(); nothing else differs.
MCP_SERVER = """
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("adder")

@mcp.tool()
def add_numbers(a: int, b: int) -> int:
    \"\"\"Add two numbers together\"\"\"
    return a + b

if __name__ == "__main__":
    mcp.run(transport="streamable-http", host="0.0.0.0", stateless_http=True)
"""

# The smallest honest Node agent: the service contract's /ping and /invocations, nothing else.
NODE_AGENT = """
const http = require("http");
let calls = 0;
http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/ping") {
    res.writeHead(200, {"content-type": "application/json"});
    return res.end(JSON.stringify({status: "Healthy", time_of_last_update: Math.floor(Date.now() / 1000)}));
  }
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    calls += 1;
    res.writeHead(200, {"content-type": "application/json"});
    res.end(JSON.stringify({echo: JSON.parse(body || "{}"), calls, node: process.version,
      session: req.headers["x-amzn-bedrock-agentcore-runtime-session-id"]}));
  });
}).listen(8080, "0.0.0.0");
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> LocalRuntime:
    with local_runtime(tmp_path_factory.mktemp("own-agents")) as rt:
        s3(rt).create_bucket(Bucket=BUCKET)
        yield rt
        rt.stop_sessions()


def s3(rt: LocalRuntime):
    """boto3's S3 client on the S3 agentcore_local serves (what AWS_ENDPOINT_URL_S3 names)."""
    return boto3.client(
        "s3",
        endpoint_url=rt.app.state.agent_services.s3_url,
        region_name="us-east-1",
        aws_access_key_id="agentcore-local",
        aws_secret_access_key="agentcore-local",
    )


def deploy(
    rt: LocalRuntime, name: str, data: bytes, entry: list[str], language: str = "PYTHON_3_11", **extra
):
    key = f"{name}/deployment_package.zip"
    s3(rt).put_object(Bucket=BUCKET, Key=key, Body=data)
    created = rt.control().create_agent_runtime(
        agentRuntimeName=name,
        agentRuntimeArtifact={
            "codeConfiguration": {
                "code": {"s3": {"bucket": BUCKET, "prefix": key}},
                "runtime": language,
                "entryPoint": entry,
            }
        },
        roleArn=ROLE,
        networkConfiguration={"networkMode": "PUBLIC"},
        filesystemConfigurations=[{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
        **extra,
    )
    rt.clock.advance(5)
    return created["agentRuntimeArn"]


def survives_stop(rt: LocalRuntime, arn: str, session: str) -> None:
    """A file written to the mount is there after StopRuntimeSession and the next call's new compute."""
    data = rt.data()
    shell(data, arn, session, "echo kept > /mnt/workspace/note.txt")
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert rt.session_state(session) == "STOPPED"
    assert shell(data, arn, session, "cat /mnt/workspace/note.txt") == "kept\n"


def test_the_sdk_streaming_agent_runs_from_a_zip_and_streams_through(runtime: LocalRuntime) -> None:
    source = (AGENTS / "bedrock_agentcore_sdk" / "streaming_agent.py.txt").read_text()
    data = code_zip({"streaming_agent.py": source}, ("bedrock-agentcore", "strands-agents"))
    arn = deploy(runtime, "sdk_streaming", data, ["streaming_agent.py"])
    session = f"sdk-streaming-{uuid.uuid4()}"
    answer = runtime.data().invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session, payload=json.dumps({"prompt": "hello"})
    )
    assert answer["contentType"].startswith("text/event-stream")
    events = [line for line in answer["response"].read().decode().splitlines() if line.startswith("data: ")]
    assert events, "the agent's stream came through empty"
    survives_stop(runtime, arn, session)


def mcp_call(rt: LocalRuntime, arn: str, session: str, method: str, params: dict) -> dict:
    answer = rt.data().invoke_agent_runtime(
        agentRuntimeArn=arn,
        runtimeSessionId=session,
        contentType="application/json",
        accept="application/json, text/event-stream",
        payload=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
    body = answer["response"].read().decode()
    if answer["contentType"].startswith("text/event-stream"):
        body = next(line[6:] for line in body.splitlines() if line.startswith("data: "))
    return json.loads(body)


def test_an_mcp_server_answers_on_8000_mcp(runtime: LocalRuntime) -> None:
    data = code_zip({"my_mcp_server.py": MCP_SERVER}, ("mcp",))
    arn = deploy(
        runtime, "mcp_adder", data, ["my_mcp_server.py"], protocolConfiguration={"serverProtocol": "MCP"}
    )
    session = f"mcp-adder-{uuid.uuid4()}"
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    assert "serverInfo" in mcp_call(runtime, arn, session, "initialize", init)["result"]
    called = mcp_call(
        runtime, arn, session, "tools/call", {"name": "add_numbers", "arguments": {"a": 2, "b": 40}}
    )
    assert called["result"]["content"][0]["text"] == "42"
    survives_stop(runtime, arn, session)


def a2a_send(rt: LocalRuntime, arn: str, session: str, method: str, text: str, context: str) -> dict:
    """One A2A JSON-RPC call through InvokeAgentRuntime (its payload is the JSON-RPC request)."""
    message = {"kind": "message", "role": "user", "messageId": str(uuid.uuid4()), "contextId": context}
    request = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method}
    request["params"] = {"message": {**message, "parts": [{"kind": "text", "text": text}]}}
    answer = rt.data().invoke_agent_runtime(
        agentRuntimeArn=arn,
        runtimeSessionId=session,
        contentType="application/json",
        accept="application/json",
        payload=json.dumps(request),
    )
    reply = json.loads(answer["response"].read())
    assert reply["id"] == request["id"], reply
    return reply


def test_an_a2a_server_serves_its_card_and_json_rpc_on_9000_and_its_notes_outlive_a_stop(
    runtime: LocalRuntime,
) -> None:
    source = (AGENTS / "a2a_by_hand" / "a2a_agent.py").read_text()
    arn = deploy(
        runtime, "a2a_notes", code_zip({"a2a_agent.py": source}), ["a2a_agent.py"],
        protocolConfiguration={"serverProtocol": "A2A"},
    )  # fmt: skip
    session, context = f"a2a-notes-{uuid.uuid4()}", str(uuid.uuid4())

    def said(text: str) -> tuple[str, int]:
        result = a2a_send(runtime, arn, session, "message/send", text, context)["result"]
        assert (result["kind"], result["role"], result["contextId"]) == ("message", "agent", context)
        return result["parts"][0]["text"], result["metadata"]["seen_by_this_process"]

    card = runtime.data().get_agent_card(agentRuntimeArn=arn, runtimeSessionId=session)["agentCard"]
    assert (card["name"], card["protocolVersion"]) == ("notes", "0.3.0")  # GetAgentCard: the agent's own
    assert said("apples") == ("remembered: apples", 1)
    assert said("pears") == ("remembered: apples, pears", 2)
    unknown = a2a_send(runtime, arn, session, "tasks/frobnicate", "x", context)
    assert unknown["error"]["code"] == -32601
    runtime.data().stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert runtime.session_state(session) == "STOPPED"
    # New compute: the process's count starts again, the notes on the session's storage do not.
    assert said("plums") == ("remembered: apples, pears, plums", 1)


# Hostile: an "A2A agent" whose card never ends (2 MB of one JSON string, then more).
ENDLESS_CARD = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-type", "application/json"); self.end_headers()
        self.wfile.write(b'{"name": "' + b"x" * 2_000_000 + b'"}')
ThreadingHTTPServer(("0.0.0.0", 9000), H).serve_forever()
"""


def test_an_agent_card_past_the_cap_is_refused_in_one_line(runtime: LocalRuntime) -> None:
    arn = deploy(
        runtime, "a2a_endless", code_zip({"card.py": ENDLESS_CARD}), ["card.py"],
        protocolConfiguration={"serverProtocol": "A2A"},
    )  # fmt: skip
    session = f"a2a-endless-{uuid.uuid4()}"
    with pytest.raises(ClientError) as refused:
        runtime.data().get_agent_card(agentRuntimeArn=arn, runtimeSessionId=session)
    error = refused.value.response["Error"]
    assert error["Code"] == "RuntimeClientError" and "over 1000000 bytes" in error["Message"]
    assert shell(runtime.data(), arn, session, "echo still-here") == "still-here\n"  # the session serves on


@pytest.mark.skipif(not shutil.which("node"), reason="no node on this machine")
def test_a_node_agent_runs_under_node_and_keeps_its_state_between_calls(runtime: LocalRuntime) -> None:
    arn = deploy(runtime, "node_echo", code_zip({"index.js": NODE_AGENT}), ["index.js"], language="NODE_22")
    session = f"node-echo-{uuid.uuid4()}"
    data = runtime.data()

    def call() -> dict:
        answer = data.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId=session, payload=b'{"n": 1}')
        return json.loads(answer["response"].read())

    first, second = call(), call()
    assert (first["echo"], first["session"], second["calls"]) == ({"n": 1}, session, 2)
    survives_stop(runtime, arn, session)
    assert call()["calls"] == 1  # new compute: the process's memory is gone, the mount's files are not


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({"../escape.py": (0o100644, b"")}, "points outside"),
        ({"main.py": (0o100644, b""), "link": (0o120777, b"../../etc")}, "points outside"),
        ({"main.py": (0o100644, b""), "abs": (0o120777, b"/etc/passwd")}, "points outside"),
        ({"main.py": (0o100644, b""), "dev": (0o020644, b"")}, "device file"),
        ({"other.py": (0o100644, b"")}, "is not a file in the zip"),
    ],
)
def test_a_bad_zip_is_refused_at_create_in_one_line(runtime: LocalRuntime, members, reason) -> None:
    with pytest.raises(ClientError) as refused:
        deploy(runtime, f"bad_{uuid.uuid4().hex[:8]}", zip_with_modes(members), ["main.py"])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert reason in refused.value.response["Error"]["Message"]


def test_a_missing_zip_is_refused_at_create(runtime: LocalRuntime) -> None:
    with pytest.raises(ClientError) as refused:
        runtime.control().create_agent_runtime(
            agentRuntimeName="missing_zip",
            agentRuntimeArtifact={
                "codeConfiguration": {
                    "code": {"s3": {"bucket": BUCKET, "prefix": "nothing/here.zip"}},
                    "runtime": "PYTHON_3_11",
                    "entryPoint": ["main.py"],
                }
            },
            roleArn=ROLE,
            networkConfiguration={"networkMode": "PUBLIC"},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "NoSuchKey" in refused.value.response["Error"]["Message"]


@pytest.mark.skipif(not shutil.which("node"), reason="no node on this machine")
def test_serve_agent_registers_a_directory_beside_the_coding_agent(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.js").write_text(NODE_AGENT)
    with local_runtime(tmp_path, agent_dir=tmp_path / "mine") as rt:
        own = rt.app.state.own_agent
        assert own.name == "mine" and rt.app.state.default_runtime.name == "coding_agent"
        session = f"serve-agent-{uuid.uuid4()}"
        answer = rt.data().invoke_agent_runtime(
            agentRuntimeArn=own.arn, runtimeSessionId=session, payload=b"{}"
        )
        assert json.loads(answer["response"].read())["calls"] == 1
        rt.stop_sessions()
