"""The agent-facing listener: bedrock-runtime Converse/ConverseStream (the offline scripted model, a
test double, behind it) and S3 (moto), reached by boto3 and by the real Strands BedrockModel."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from starlette.testclient import TestClient

from agentcore_local import agent_services
from agentcore_local.agent_services import IN_SANDBOX_PORT, AgentServices, start_agent_services
from agentcore_local.bedrock_runtime import ScriptedBackend
from scripted.plan import BANNER
from tests.agent_process import REPO, AgentProcess
from tests.test_demo_plan import BUILD, RESUME

DEMO_PLAN = REPO / "demo" / "plan.json"
MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
SYSTEM = [{"text": "You are a coding agent. Your workspace is /tmp/ws-test; it persists across sessions."}]


@pytest.fixture(scope="module")
def services() -> Iterator[AgentServices]:
    # A short path: a unix socket's name is limited to 107 bytes, and pytest's tmp_path can be longer.
    state = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    running = start_agent_services(state, ScriptedBackend(DEMO_PLAN), "us-west-2")
    yield running
    running.close()
    shutil.rmtree(state)


def client(services: AgentServices, name: str, **config: object):
    return boto3.client(
        name,
        endpoint_url=services.tcp_url,
        region_name="us-west-2",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def user(*texts: str) -> dict:
    return {"role": "user", "content": [{"text": t} for t in texts]}


def test_converse_answers_the_demo_plans_first_tool_call(services: AgentServices):
    answer = client(services, "bedrock-runtime").converse(
        modelId=MODEL_ID, messages=[user("Workspace /tmp/ws-test is empty.", BUILD)], system=SYSTEM
    )
    assert answer["stopReason"] == "tool_use"
    (block,) = answer["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "shell" and block["toolUse"]["input"] == {"command": "ls -A"}
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_converse_stream_is_an_event_stream_botocore_parses(services: AgentServices):
    """The second call of the turn: botocore decodes the frames; {workspace} came from the system prompt."""
    tool_use = {"toolUse": {"toolUseId": "t1", "name": "shell", "input": {"command": "ls -A"}}}
    result = {"toolResult": {"toolUseId": "t1", "content": [{"text": "(empty)"}], "status": "success"}}
    messages = [user("Workspace is empty.", BUILD), {"role": "assistant", "content": [tool_use]}]
    messages.append({"role": "user", "content": [result]})
    answer = client(services, "bedrock-runtime").converse_stream(
        modelId=MODEL_ID, messages=messages, system=SYSTEM
    )
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    events = list(answer["stream"])
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    start = events[1]["contentBlockStart"]
    assert start["contentBlockIndex"] == 0 and start["start"]["toolUse"]["name"] == "file_editor"
    tool_input = json.loads(events[2]["contentBlockDelta"]["delta"]["toolUse"]["input"])
    assert tool_input["path"] == "/tmp/ws-test/package.json"
    assert events[4]["messageStop"]["stopReason"] == "tool_use"


def test_a_final_text_streams_word_by_word_and_quotes_the_history(services: AgentServices):
    history = [user("earlier"), {"role": "assistant", "content": [{"text": "ok"}]}]
    answer = client(services, "bedrock-runtime").converse_stream(
        modelId=MODEL_ID, messages=[*history, user("hello there")]
    )
    events = list(answer["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == f"{BANNER} You said: hello there I was given 2 messages of history and ran no tools."
    assert sum("contentBlockDelta" in e for e in events) > 5
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            {"messages": [{"role": "user", "content": [{"text": 5}]}]},
            r"Invalid type for parameter messages\[0\].content\[0\].text",
        ),
        (
            {"messages": [{"content": [{"text": "hi"}]}]},
            r'Missing required parameter in messages\[0\]: "role"',
        ),
        ({}, "A conversation must start with a user message"),
        (
            {"messages": [{"role": "user", "content": [{}]}]},
            "Must set one of the following keys for tagged union",
        ),
    ],
)
def test_requests_botocore_would_refuse_get_a_validation_exception(
    services: AgentServices, params: dict, says: str
):
    runtime = client(services, "bedrock-runtime", parameter_validation=False)  # let the bad request through
    with pytest.raises(runtime.exceptions.ValidationException, match=says) as caught:
        runtime.converse(modelId=MODEL_ID, **params)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{nope", "not JSON"),
        (b"[]", "must be a JSON object"),
        (
            json.dumps({"messages": [user("hi")], "temperature": 0.5}).encode(),
            'Unknown parameter in input: "temperature"',
        ),
    ],
)
def test_bodies_no_sdk_would_send_are_validation_exceptions(services: AgentServices, body: bytes, says: str):
    answer = httpx.post(f"{services.tcp_url}/model/{MODEL_ID}/converse-stream", content=body)
    assert answer.status_code == 400 and answer.headers["x-amzn-errortype"] == "ValidationException"
    assert says in answer.json()["message"]


def test_a_planned_failure_is_a_model_error(tmp_path: Path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rules": [{"match": ".", "steps": [{"fail": "rehearsed outage"}]}]}))
    app = agent_services.create_app("http://127.0.0.1:1", ScriptedBackend(plan))
    with TestClient(app) as http:
        answer = http.post("/model/m.x/converse", json={"messages": [user("hi")]})
    assert answer.status_code == 424 and answer.headers["x-amzn-errortype"] == "ModelErrorException"
    assert "rehearsed outage" in answer.json()["message"]


def test_the_unix_socket_serves_the_same_listener(services: AgentServices):
    """What a sandbox with its own network reaches through its forwarded port."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(services.socket_path))) as http:
        answer = http.post(f"http://sandbox/model/{MODEL_ID}/converse", json={"messages": [user("hi")]})
    assert answer.status_code == 200
    assert answer.json()["output"]["message"]["content"][0]["text"].startswith(BANNER)
    assert services.forward == (IN_SANDBOX_PORT, services.socket_path)


def test_s3_put_and_get_go_through_the_listener_to_moto(services: AgentServices):
    s3, bucket = client(services, "s3"), f"backups-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    body = bytes(range(256)) * 4096  # 1 MiB, binary: the proxy passes bytes through untouched
    s3.put_object(Bucket=bucket, Key="session/a/checkpoint-1.tar", Body=body)
    assert s3.get_object(Bucket=bucket, Key="session/a/checkpoint-1.tar")["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key="session/a/checkpoint-1.tar")["ContentLength"] == len(body)
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=bucket, Key="missing")


def test_requests_signed_for_other_services_are_refused(services: AgentServices):
    """moto serves every service; through the listener a session reaches S3 and bedrock-runtime only."""
    with pytest.raises(ClientError) as caught:
        client(services, "iam").list_users()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert httpx.get(f"{services.tcp_url}/").status_code == 403  # unsigned


def test_agent_env_points_the_agents_aws_calls_at_the_listener(services: AgentServices):
    inside = services.agent_env(in_sandbox=True)
    assert inside["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == inside["AWS_ENDPOINT_URL_S3"]
    assert inside["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{IN_SANDBOX_PORT}"
    assert inside["MODEL_PROVIDER"] == "bedrock" and inside["AWS_ACCESS_KEY_ID"]
    assert services.agent_env()["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == services.tcp_url


def test_the_real_bedrock_model_plays_the_demo_through_coding_agent(services: AgentServices, tmp_path: Path):
    """The container's model path: MODEL_PROVIDER=bedrock, BedrockModel -> ConverseStream -> the listener."""
    agent = AgentProcess(tmp_path / "ws", plan=Path("/nonexistent"), **services.agent_env())
    try:
        agent.start()
        first = agent.invoke(BUILD, conversation_id="demo").json()
        assert first["response"].startswith(BANNER), first
        assert "I was given 0 messages of history" in first["response"]
        package = json.loads((agent.workspace / "package.json").read_text())
        assert set(package["dependencies"]) == {"express", "dotenv"}
        agent.stop()  # new compute, same storage
        agent.start()
        second = agent.invoke(RESUME, conversation_id="demo").json()
    finally:
        agent.stop()
    assert second["history"]["messages_before"] == 10
    assert "I was given 10 messages of history" in second["response"]
    assert "app.post('/echo'" in (agent.workspace / "index.js").read_text()
