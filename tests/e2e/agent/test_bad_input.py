"""End to end: malformed bodies, prompts and headers get a 4xx with one line, and the conversation
goes on; the shell tool's commands never see the agent's secrets. The real coding_agent.py over
real HTTP, with the offline scripted model (a test double)."""

from __future__ import annotations

import contextlib
import http.client
import json
from pathlib import Path

import pytest

from tests.support.agent_process import AgentProcess

SECRETS = {
    "OPENAI_API_KEY": "sk-test-never-in-a-tool",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-never-in-a-tool",
    "AWS_SESSION_TOKEN": "aws-token-never-in-a-tool",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    agent = AgentProcess(
        tmp_path_factory.mktemp("workspace"), TOOL_ENV="PROJECT_FLAG", PROJECT_FLAG="on", **SECRETS
    )
    agent.start()
    yield agent
    agent.stop()


def post_raw(server: AgentProcess, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST", "/invocations", body, {"Content-Type": "application/json", **(headers or {})}
        )
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def still_answers(server: AgentProcess, conversation_id: str) -> None:
    answer = server.invoke("hi", conversation_id=conversation_id)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400, "nests deeper than"),
        (b'{"prompt": "hi", "extra": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nests deeper than"),
        (b'{"prompt": "half \\ud800 a pair", "conversation_id": "sur"}', 400, "lone surrogate"),
        (b'{"prompt": "hi", "\\udfff": 1}', 400, "lone surrogate"),
        (b'{"prompt": "\xff\xfe"}', 400, "not UTF-8"),
        (b'{"prompt": 42}', 400, '"prompt" is required'),
        (b'{"prompt": "hi", "stream": "yes"}', 400, '"stream" must be'),
        (b'{"prompt": "hi", "conversation_id": ["a"]}', 400, '"conversation_id" must be'),
        (b'{"action": "undo", "turns": "two"}', 400, "turns"),
        (b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413, "bytes"),
    ],
    ids=[
        "100k-deep",
        "deep-field",
        "lone-surrogate",
        "surrogate-key",
        "not-utf8",
        "prompt-int",
        "stream-str",
        "id-list",
        "turns-str",
        "2-MiB",
    ],
)
def test_a_malformed_body_is_a_4xx_with_one_line_and_the_server_goes_on(
    server: AgentProcess, body: bytes, status: int, says: str
):
    got, answer = post_raw(server, body)
    assert got == status, answer[:300]
    error = json.loads(answer)["error"]
    assert says in error and "\n" not in error and "Traceback" not in error
    still_answers(server, "after-bad-body")


def test_a_surrogate_pair_in_escapes_is_a_prompt_like_any_other(server: AgentProcess):
    got, answer = post_raw(server, b'{"prompt": "hi \\ud83d\\ude00", "conversation_id": "pair"}')
    assert got == 200, answer[:300]


def test_huge_headers_are_refused_and_the_server_goes_on(server: AgentProcess):
    got, answer = post_raw(server, b'{"prompt": "hi"}', {"X-Padding": "a" * 40_000})
    assert got == 431 and "headers hold" in json.loads(answer)["error"]
    with contextlib.suppress(ConnectionError):  # past the HTTP parser's buffer it closes the connection
        got, _ = post_raw(server, b'{"prompt": "hi"}', {"X-Padding": "a" * 400_000})
        assert 400 <= got < 500
    still_answers(server, "after-big-headers")


def test_the_shell_tool_gets_a_clean_environment_without_the_agents_secrets(server: AgentProcess):
    answer = server.invoke("shell env", conversation_id="env")
    assert answer.status_code == 200, answer.text
    printed = answer.json()["response"]
    assert "PATH=" in printed and "HOME=" in printed  # what a command needs to run
    assert f"WORKSPACE_DIR={server.workspace}" in printed
    assert "PROJECT_FLAG=on" in printed  # named in TOOL_ENV: passed on purpose
    for name, value in SECRETS.items():
        assert name not in printed and value not in printed


def test_a_prompt_with_a_lone_surrogate_leaves_the_history_usable(server: AgentProcess, tmp_path: Path):
    post_raw(server, b'{"prompt": "\\ud800", "conversation_id": "kept"}')
    still_answers(server, "kept")  # nothing of the refused prompt reached the conversation
    assert server.invoke("hi", conversation_id="kept").json()["history"]["messages_before"] == 2
