"""The agent-facing listener: bedrock-runtime Converse/ConverseStream (the offline scripted model, a
test double, behind it) and S3 (moto), reached by boto3 and by the real Strands BedrockModel."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from starlette.testclient import TestClient

from agentcore_local.services import listener as agent_services
from agentcore_local.services import listener_sockets
from agentcore_local.services.bedrock_runtime import ScriptedBackend
from agentcore_local.services.listener import (
    IN_SANDBOX_PORT,
    AgentServices,
    backend_from_spec,
    start_agent_services,
)
from scripted.plan import BANNER
from tests.e2e.agent.test_demo_plan import BUILD, RESUME
from tests.support.agent_process import REPO, AgentProcess

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


def test_the_workspace_comes_from_the_system_prompt_else_the_messages_else_the_mount_path():
    from agentcore_local.services.bedrock_runtime import workspace_in

    assert workspace_in({"system": SYSTEM, "messages": []}) == "/tmp/ws-test"
    assert workspace_in({"messages": [user("Workspace /srv/w is empty.", "hi")]}) == "/srv/w"
    assert workspace_in({"messages": [user("hi")]}) == "/mnt/workspace"


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(monkeypatch: pytest.MonkeyPatch):
    from agentcore_local.services import bedrock_runtime

    monkeypatch.setattr(bedrock_runtime, "MAX_BODY", 100)
    app = agent_services.create_app("http://127.0.0.1:1", ScriptedBackend(DEMO_PLAN))
    with TestClient(app) as http:
        declared = http.post("/model/m.x/converse", json={"messages": [user("x" * 200)]})
        chunked = http.post("/model/m.x/converse", content=iter([b"{" + b" " * 80, b" " * 80 + b"}"]))
    assert declared.status_code == chunked.status_code == 400
    assert "agentcore_local takes up to 100" in declared.json()["message"]
    assert "over 100 bytes" in chunked.json()["message"]


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
        answer = http.post(
            f"http://127.0.0.1:{IN_SANDBOX_PORT}/model/{MODEL_ID}/converse", json={"messages": [user("hi")]}
        )
    assert answer.status_code == 200
    assert answer.json()["output"]["message"]["content"][0]["text"].startswith(BANNER)
    assert services.forward == (IN_SANDBOX_PORT, services.socket_path)


def test_without_a_model_backend_converse_says_how_to_get_one():
    app = agent_services.create_app("http://127.0.0.1:1", None)
    with TestClient(app) as http:
        answer = http.post("/model/m.x/converse", json={"messages": [user("hi")]})
    assert answer.status_code == 403 and answer.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert "--model-backend scripted" in answer.json()["message"]


def test_requests_signed_for_other_services_are_refused(services: AgentServices):
    """moto serves every service; through the listener a session reaches S3 and bedrock-runtime only."""
    with pytest.raises(ClientError) as caught:
        client(services, "iam").list_users()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert httpx.get(f"{services.tcp_url}/").status_code == 403  # unsigned


def test_a_state_dir_too_deep_for_a_unix_socket_gets_a_short_one(tmp_path: Path):
    deep = tmp_path / ("d" * 100)
    path = listener_sockets.socket_path_for(deep)
    assert len(str(path)) <= 107 and path.name == listener_sockets.SOCKET_NAME
    assert path.parent.is_dir()
    path.parent.rmdir()
    assert listener_sockets.socket_path_for(Path("/tmp/x")) == Path("/tmp/x/agent-services.sock")


def test_agent_env_points_the_agents_aws_calls_at_the_listener(services: AgentServices):
    inside = services.agent_env(in_sandbox=True)
    assert inside["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == inside["AWS_ENDPOINT_URL_S3"]
    assert inside["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{IN_SANDBOX_PORT}"
    assert inside["MODEL_PROVIDER"] == "bedrock" and inside["AWS_ACCESS_KEY_ID"]
    assert services.agent_env()["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == services.tcp_url


def test_bedrock_model_without_streaming_parses_converse_answers(services: AgentServices):
    """BedrockModel(streaming=False) calls Converse; its tool calls reach the tools with their inputs."""
    from strands import Agent, tool
    from strands.models.bedrock import BedrockModel

    calls: list[tuple[str, dict]] = []

    @tool
    def shell(command: str) -> str:
        """Run a command."""
        calls.append(("shell", {"command": command}))
        return "exit 0"

    @tool
    def file_editor(command: str, path: str, old_str: str = "", new_str: str = "") -> str:
        """Edit a file."""
        calls.append(("file_editor", {"command": command, "path": path}))
        return "edited"

    model = BedrockModel(
        model_id=MODEL_ID, streaming=False, endpoint_url=services.tcp_url, region_name="us-west-2"
    )
    agent = Agent(
        model=model, tools=[shell, file_editor], system_prompt=SYSTEM[0]["text"], callback_handler=None
    )
    answer = str(agent(RESUME)).strip()
    assert [name for name, _ in calls] == ["shell", "file_editor", "shell"]
    assert calls[1][1] == {"command": "str_replace", "path": "/tmp/ws-test/index.js"}
    assert answer.startswith(BANNER) and answer.endswith("Syntax check and route count: exit 0")


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


class FakeOpenAI:
    """A TEST DOUBLE of an OpenAI-compatible server on 127.0.0.1: records requests, answers from a queue."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.answers: list[tuple[int, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append((self.path, body))
                status, answer = fake.answers.pop(0)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def completion(message: dict, finish: str, usage: tuple[int, int] = (7, 3)) -> dict:
    tokens = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": tokens}


@pytest.fixture(scope="module")
def openai_services() -> Iterator[tuple[AgentServices, FakeOpenAI]]:
    fake = FakeOpenAI()
    state = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    running = start_agent_services(
        state, backend_from_spec(f"ollama={fake.url}", DEMO_PLAN, "tiny"), "us-west-2"
    )
    yield running, fake
    running.close()
    fake.close()
    shutil.rmtree(state)


SHELL_SPEC = {
    "toolSpec": {
        "name": "shell",
        "description": "run a command",
        "inputSchema": {"json": {"type": "object", "properties": {"command": {"type": "string"}}}},
    }
}


def test_a_converse_call_becomes_a_chat_completion_and_its_tool_call_a_tool_use(openai_services):
    services, fake = openai_services
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "shell", "arguments": '{"command": "ls"}'},
    }
    fake.answers.append(
        (200, completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"))
    )
    answer = client(services, "bedrock-runtime").converse(
        modelId=MODEL_ID,
        messages=[user("list the files")],
        system=SYSTEM,
        toolConfig={"tools": [SHELL_SPEC, {"cachePoint": {"type": "default"}}]},
        inferenceConfig={"maxTokens": 100, "temperature": 0.2},
    )
    assert answer["stopReason"] == "tool_use"
    assert answer["output"]["message"]["content"] == [
        {"toolUse": {"toolUseId": "call_1", "name": "shell", "input": {"command": "ls"}}}
    ]
    assert answer["usage"] == {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}
    path, sent = fake.requests[-1]
    assert path == "/v1/chat/completions"  # ollama=URL uses Ollama's OpenAI-compatible API
    assert sent["model"] == "tiny" and sent["max_tokens"] == 100 and sent["temperature"] == 0.2
    assert sent["messages"] == [
        {"role": "system", "content": SYSTEM[0]["text"]},
        {"role": "user", "content": "list the files"},
    ]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "shell",
                "description": "run a command",
                "parameters": SHELL_SPEC["toolSpec"]["inputSchema"]["json"],
            },
        }
    ]
    assert sent["tool_choice"] == "auto"


def test_tool_results_go_back_as_tool_messages_and_the_text_streams(openai_services):
    services, fake = openai_services
    fake.answers.append((200, completion({"role": "assistant", "content": "two files"}, "stop")))
    tool_use = {"toolUse": {"toolUseId": "call_1", "name": "shell", "input": {"command": "ls"}}}
    result = {"toolResult": {"toolUseId": "call_1", "content": [{"text": "a b"}], "status": "success"}}
    messages = [
        user("list the files"),
        {"role": "assistant", "content": [{"text": "Looking."}, tool_use]},
        {"role": "user", "content": [result]},
    ]
    stream = client(services, "bedrock-runtime").converse_stream(modelId=MODEL_ID, messages=messages)
    events = list(stream["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "two files" and {"messageStop": {"stopReason": "end_turn"}} in events
    assert fake.requests[-1][1]["messages"] == [
        {"role": "user", "content": "list the files"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"command": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a b"},
    ]


@pytest.mark.parametrize(("status", "error"), [(429, "ThrottlingException"), (500, "ModelErrorException")])
def test_server_errors_become_bedrock_errors_strands_understands(openai_services, status: int, error: str):
    services, fake = openai_services
    fake.answers.append((status, {"error": "busy"}))
    runtime = client(services, "bedrock-runtime")
    with pytest.raises(ClientError) as caught:
        runtime.converse(modelId=MODEL_ID, messages=[user("hi")])
    assert caught.value.response["Error"]["Code"] == error and "busy" in str(caught.value)


def test_an_unreachable_server_is_a_model_error_that_says_so():
    app = agent_services.create_app(
        "http://127.0.0.1:1", backend_from_spec("openai=http://127.0.0.1:9/v1", DEMO_PLAN)
    )
    with TestClient(app) as http:
        answer = http.post("/model/m.x/converse", json={"messages": [user("hi")]})
    assert answer.status_code == 424 and "cannot reach the openai server" in answer.json()["message"]


@pytest.mark.parametrize("spec", ["gpt", "openai=", "ollama=localhost:11434", "none=x"])
def test_a_bad_model_backend_spec_is_one_line_that_lists_the_choices(spec: str):
    with pytest.raises(ValueError, match=r"use scripted, scripted=PLAN\.json, openai="):
        backend_from_spec(spec, DEMO_PLAN)


def test_model_backend_specs_choose_the_backend():
    assert backend_from_spec("none", DEMO_PLAN) is None
    assert isinstance(backend_from_spec("scripted", DEMO_PLAN), ScriptedBackend)
    ollama = backend_from_spec("ollama=http://127.0.0.1:11434/", DEMO_PLAN, "llama3.2")
    assert ollama.url == "http://127.0.0.1:11434/v1/chat/completions" and ollama.model == "llama3.2"
