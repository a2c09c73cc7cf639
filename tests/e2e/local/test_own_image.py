"""Your own image under `--sandbox docker`: its own ENTRYPOINT runs (nothing of ours inside it), the
containerUri picks the local image, and the session's storage outlives a stop, through boto3.

Marked `image` (make test-image; excluded from make test): it needs a Docker engine, started from
Debian's packages when none answers (image/engine.sh), and a base made by image/make_bases.sh.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from agentcore_local.sandbox.docker import env_lines
from agentcore_local.sandbox.images import ecr_uri, local_names
from tests.support.docker_engine import make_bases, start_engine
from tests.support.local_runtime import ROLE, LocalRuntime, local_runtime, shell

ARCH = "amd64"
TAG = "own-agent:test"
URI = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/{TAG}"
MOUNT = "/mnt/notes"

# A stranger's agent: the service contract on 8080 (standard library only), appending each prompt to
# a file on the mount; its answer says what the file holds, what it counted in memory and who runs it.
AGENT = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls = 0

class Handler(BaseHTTPRequestHandler):
    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer({"status": "Healthy", "time_of_last_update": 0})

    def do_POST(self):
        global calls
        calls += 1
        prompt = json.loads(self.rfile.read(int(self.headers["content-length"])))["prompt"]
        with open("/mnt/notes/prompts.txt", "a") as notes:
            notes.write(prompt + "\\n")
        with open("/mnt/notes/prompts.txt") as notes:
            lines = notes.read().split()
        pid1 = open("/proc/1/cmdline").read().split("\\0")[:-1]
        self.answer({"lines": lines, "calls": calls, "pid1": pid1, "cwd": os.getcwd()})

ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
"""


def docker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"docker {args[0]} failed: {result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def own_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny image FROM the local Python base whose ENTRYPOINT is the agent above."""
    start_engine(ARCH)
    base = make_bases(ARCH)["PYTHON_BASE"]
    context = tmp_path_factory.mktemp("own-image")
    (context / "agent.py").write_text(AGENT)
    (context / "Dockerfile").write_text(
        f'FROM {base}\nWORKDIR /srv\nCOPY agent.py .\nENTRYPOINT ["python3", "/srv/agent.py"]\n'
    )
    docker("build", "-q", "-t", TAG, str(context))
    return TAG


@pytest.fixture(scope="module")
def runtime(own_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    with local_runtime(tmp_path_factory.mktemp("own-image-serve"), sandbox="docker") as rt:
        yield rt
        rt.stop_sessions()


def create(rt: LocalRuntime, name: str, uri: str) -> str:
    created = rt.control().create_agent_runtime(
        agentRuntimeName=name,
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": uri}},
        roleArn=ROLE,
        networkConfiguration={"networkMode": "PUBLIC"},
        filesystemConfigurations=[{"sessionStorage": {"mountPath": MOUNT}}],
    )
    rt.clock.advance(5)
    return created["agentRuntimeArn"]


def invoke(rt: LocalRuntime, arn: str, session: str, prompt: str) -> dict:
    answer = rt.data().invoke_agent_runtime(
        agentRuntimeArn=arn, runtimeSessionId=session, payload=json.dumps({"prompt": prompt})
    )
    return json.loads(answer["response"].read())


def containers(name_part: str) -> list[str]:
    return [name for name in docker("ps", "--format", "{{.Names}}").stdout.split() if name_part in name]


@pytest.mark.image
def test_the_images_own_entrypoint_runs_and_its_mount_outlives_a_stop(runtime: LocalRuntime) -> None:
    arn = create(runtime, "own_image", URI)
    runtime_id = arn.rsplit("/", 1)[1]
    session = f"own-image-{uuid.uuid4()}"
    first = invoke(runtime, arn, session, "first")
    assert first["pid1"] == ["python3", "/srv/agent.py"]  # the image's ENTRYPOINT is PID 1: not ours
    assert (first["lines"], first["calls"], first["cwd"]) == (["first"], 1, "/srv")
    assert shell(runtime.data(), arn, session, "pwd; cat prompts.txt") == f"{MOUNT}\nfirst\n"
    assert containers(runtime_id), "the session's container is not running"

    runtime.data().stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    assert runtime.session_state(session) == "STOPPED"
    assert not containers(runtime_id), "the container outlived StopRuntimeSession"

    resumed = invoke(runtime, arn, session, "second")
    assert (resumed["lines"], resumed["calls"]) == (["first", "second"], 1)  # new compute, same files


@pytest.mark.image
def test_a_container_uri_with_no_local_image_is_refused_at_create_in_one_line(
    runtime: LocalRuntime,
) -> None:
    with pytest.raises(ClientError) as refused:
        create(runtime, f"no_image_{uuid.uuid4().hex[:6]}", URI.replace(TAG, "nowhere:v9"))
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "nowhere:v9" in error["Message"] and "\n" not in error["Message"]


# --- without an engine ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "names"),
    [
        (URI, [URI, TAG]),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/agent", None),
        (
            "public.ecr.aws/team/agent@sha256:abc",
            ["public.ecr.aws/team/agent@sha256:abc", "team/agent@sha256:abc"],
        ),
        ("coding-agent:ci-amd64", ["coding-agent:ci-amd64"]),
    ],
)
def test_a_container_uri_names_itself_then_its_repository_and_tag(uri: str, names: list[str] | None) -> None:
    expected = names or [uri, "team/agent:latest"]
    assert local_names(uri) == expected


def test_serves_own_runtime_names_docker_image_as_an_ecr_uri_that_maps_back() -> None:
    uri = ecr_uri("coding-agent:ci-amd64", "123456789012", "us-west-2")
    assert uri == "123456789012.dkr.ecr.us-west-2.amazonaws.com/coding-agent:ci-amd64"
    assert local_names(uri)[-1] == "coding-agent:ci-amd64" and ecr_uri(uri, "1", "x") == uri


def test_a_runtime_variable_cannot_smuggle_another_into_the_env_file() -> None:
    lines = env_lines({"GREETING": "hi\nDOCKER_HOST=tcp://evil", "PLAIN": "a=b"}).splitlines()
    assert lines == ["PLAIN=a=b"]
