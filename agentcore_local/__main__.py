"""`python -m agentcore_local serve | env`: the local AgentCore Runtime, and the exports that reach it."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from .settings import DEFAULT_PORT, Settings, parse_size

DEFAULT_STATE_DIR = Path(".agentcore/local")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number of 0 or more: {text!r}")
    return int(text)


def cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a number of CPUs above 0: {text!r} (examples: 1, 0.5, 2)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentcore_local",
        description="AgentCore Runtime with Session Storage on this machine: the same boto3 calls as AWS, "
        "answered locally, each session's agent in its own sandbox.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the local runtime until Ctrl-C",
        description="Serve the bedrock-agentcore data plane and the bedrock-agentcore-control runtime "
        "operations. "
        "Registers a runtime named coding_agent (this checkout's coding_agent.py) and prints its ARN. "
        "MODEL_PROVIDER, MODEL_ID and SCRIPTED_PLAN from this environment reach the agent unless the "
        "runtime's environmentVariables set them.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)"
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        default=DEFAULT_STATE_DIR,
        help="runtimes, session storage and logs (default: %(default)s)",
    )
    serve.add_argument(
        "--sandbox",
        choices=["auto", "bwrap", "process", "docker"],
        default="auto",
        help="auto: bwrap where it works, else process (NOT isolated); docker: each runtime's "
        "containerUri as a local image, run with its own entrypoint (default: auto)",
    )
    serve.add_argument(
        "--storage-quota",
        type=parse_size,
        metavar="SIZE",
        default=None,
        help="session storage per session, e.g. 1G or 500M (default: 1G; AWS's figure is unconfirmed)",
    )
    serve.add_argument(
        "--no-storage-volume",
        dest="storage_volume",
        action="store_false",
        default=None,
        help="measure the quota after each call instead of giving each session a filesystem of its "
        "size (which needs root and loop devices)",
    )
    serve.add_argument(
        "--tmp-size",
        type=parse_size,
        metavar="SIZE",
        default=None,
        help="the size of each session's private /tmp, a tmpfs of host RAM (default: 512M)",
    )
    serve.add_argument(
        "--docker-image",
        metavar="IMAGE",
        default=None,
        help="the default runtime's image under --sandbox docker, e.g. what `make build` tagged "
        "(default: coding-agent:latest)",
    )
    serve.add_argument(
        "--max-sessions",
        type=positive_int,
        metavar="N",
        default=None,
        help="sessions with compute at once; past it a new session gets ServiceQuotaExceededException "
        "(default: 8 per core, at most one per 512 MiB of memory)",
    )
    serve.add_argument(
        "--session-memory",
        type=parse_size,
        metavar="SIZE",
        default=None,
        help="memory per session's compute, its /tmp included, e.g. 2G (default: this machine's memory "
        "less 1 GiB for serve, split among --max-sessions, at most AWS's 8 GB)",
    )
    serve.add_argument(
        "--session-pids",
        type=positive_int,
        metavar="N",
        default=None,
        help="processes and threads per session's compute (default: half the kernel's pid_max split "
        "among --max-sessions, at most 4096)",
    )
    serve.add_argument(
        "--session-cpus",
        type=cpus,
        metavar="N",
        default=None,
        help="CPU quota per session's compute in cores, e.g. 1.5; sessions share busy cores equally "
        "(default: AWS's 2 vCPU, at most this machine's cores)",
    )
    serve.add_argument(
        "--pool",
        type=non_negative_int,
        metavar="N",
        default=1,
        help="sandboxes kept started (agent imported, Healthy, no storage yet) for new sessions of the "
        "runtime used last; bwrap as root only; not counted by --max-sessions; 0: none "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--model-backend",
        metavar="BACKEND",
        default="scripted",
        help="what answers the agents' bedrock-runtime calls: scripted (the offline test double playing "
        "SCRIPTED_PLAN), scripted=PLAN.json, openai=http://HOST:PORT/v1, ollama=http://HOST:11434, or none "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--backend-model",
        metavar="NAME",
        default=None,
        help="the model name an openai or ollama backend serves (default: the agent's MODEL_ID)",
    )
    serve.add_argument(
        "--backup-bucket",
        metavar="NAME",
        default="agentcore-local-backups",
        help="the S3 bucket (served locally, kept while serve runs) the agents back their checkpoints up "
        "to, passed as BACKUP_BUCKET; '' turns backups off (default: %(default)s)",
    )
    serve.add_argument(
        "--agent",
        type=Path,
        metavar="PATH",
        default=None,
        help="also register this directory (entry file main.py, agent.py, app.py, index.js or main.js, or "
        "PATH naming it) as a code-zip runtime, as a CreateAgentRuntime of its zip would (default: none)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every session start and stop")

    env = sub.add_parser(
        "env",
        help="print the export lines that point boto3 (and client.py) here",
        description="Print shell export lines: the endpoint variables (boto3's and the starter toolkit's), "
        "a region, dummy credentials, "
        "and AGENT_ARN (the server's live coding_agent runtime) when the state dir belongs to a running "
        "server. "
        'Use: eval "$(python -m agentcore_local env)"',
    )
    env.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port of the server (default: %(default)s)"
    )
    env.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"read URL and ARN from a server's state dir (default: {DEFAULT_STATE_DIR} if in use)",
    )
    env.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for the server to start"
    )
    return parser


# Served by serve's moto for the host side: a code zip's upload (S3), the starter toolkit's
# execution role and account (IAM, STS).
MOTO_SERVICES = ("S3", "IAM", "STS")


def env_lines(
    url: str, arn: str | None, region: str, record: Path | None = None, aws_url: str | None = None
) -> list[str]:
    """The exports; `record`: the server's runtime record, so deploy.py and client.py read and
    write it instead of the record of your AWS deployment; `aws_url`: serve's moto server."""
    lines = [
        f"export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE={url}",
        f"export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL={url}",
        # The starter toolkit (bedrock-agentcore-starter-toolkit) ignores AWS_ENDPOINT_URL_*; it reads these.
        f"export BEDROCK_AGENTCORE_DP_ENDPOINT={url}",
        f"export BEDROCK_AGENTCORE_CP_ENDPOINT={url}",
        f"export AWS_REGION={region}",
        f"export AWS_DEFAULT_REGION={region}",
        "export AWS_ACCESS_KEY_ID=agentcore-local",
        "export AWS_SECRET_ACCESS_KEY=agentcore-local",
    ]
    lines += [f"export AWS_ENDPOINT_URL_{service}={aws_url}" for service in MOTO_SERVICES if aws_url]
    if arn:
        lines.append(f"export AGENT_ARN={arn}")
    if record is not None:
        lines.append(f"export AGENTCORE_RUNTIME_FILE={shlex.quote(str(record.resolve()))}")
    return lines


def read_endpoint(state_dir: Path, wait: float) -> dict | None:
    """The running `serve` of `state_dir` (its endpoint file names it), polled for up to `wait`
    seconds: its url, and the live default runtime's agentRuntimeArn from the server itself."""
    import urllib.request

    from .server import ENDPOINT_FILE

    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            endpoint = json.loads((state_dir / ENDPOINT_FILE).read_text())
            with urllib.request.urlopen(endpoint["url"] + "/_local/health", timeout=2) as answer:
                health = json.loads(answer.read())
            return {**endpoint, "agentRuntimeArn": health.get("agentRuntimeArn"), "health": health}
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    if args.command == "env":
        from .server import ENDPOINT_FILE, RUNTIME_FILE  # their one spelling (0.3 s to import)

        url, arn, record, aws_url = f"http://127.0.0.1:{args.port}", None, None, None
        if args.state_dir is None and (DEFAULT_STATE_DIR / ENDPOINT_FILE).exists():
            args.state_dir = DEFAULT_STATE_DIR  # `make serve-local` in another terminal
        if args.state_dir is not None:
            endpoint = read_endpoint(args.state_dir, args.wait)
            if endpoint is None:
                print(f"agentcore_local: no server answers for state dir {args.state_dir}", file=sys.stderr)
                return 1
            url, arn, aws_url = endpoint["url"], endpoint.get("agentRuntimeArn"), endpoint.get("awsUrl")
            record = args.state_dir / RUNTIME_FILE
            if arn is None and endpoint["health"].get("defaultRuntime"):
                name = endpoint["health"]["defaultRuntime"]
                print(
                    f"agentcore_local: no runtime named {name} now (deleted?): no AGENT_ARN; "
                    "re-create it with `python deploy.py ensure`",
                    file=sys.stderr,
                )
        print("\n".join(env_lines(url, arn, settings.region, record, aws_url)))
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s | %(message)s",
    )
    from .state_lock import StateDirInUse, hold

    try:  # first: a second serve on a state dir in use refuses before the heavy imports (~2 s)
        held = hold(args.state_dir)
    except StateDirInUse as error:
        print(f"agentcore_local: {error}", file=sys.stderr)
        return 1
    # The edge, and the one place that knows which agent this emulator hosts (Settings.agent_script):
    # that agent's provider registry names the variables its models read. A lazy import of plain
    # data (no strands): the library modules of agentcore_local still never import agent/.
    from agent.model.providers import model_variables

    from .control import entry_of
    from .sandbox import SandboxUnavailable
    from .server import serve
    from .services import backend_from_spec
    from .state_lock import StateDirInUse

    try:  # a bad spec, plan, --agent or --session-* figure is one line now, not a failed start later
        settings = Settings.from_env(
            passthrough=model_variables(),
            model_backend=args.model_backend,
            backend_model=args.backend_model,
            backup_bucket=args.backup_bucket,  # '' (off) is kept: only None means 'not given'
            host=args.host,
            port=args.port,
            state_dir=args.state_dir,
            sandbox=args.sandbox,
            storage_quota_bytes=args.storage_quota,
            docker_image=args.docker_image,
            max_sessions=args.max_sessions,
            pool=args.pool,
            agent_dir=args.agent,
            storage_volume=args.storage_volume,
            tmp_size_bytes=args.tmp_size,
            session_memory_bytes=args.session_memory,
            session_pids=args.session_pids,
            session_cpus=args.session_cpus,
        )
        backend_from_spec(settings.model_backend, settings.scripted_plan, settings.backend_model)
        if settings.agent_dir is not None:
            entry_of(settings.agent_dir)
    except ValueError as error:
        print(f"agentcore_local: {error}", file=sys.stderr)
        return 2
    try:
        serve(settings, held)
    except SandboxUnavailable as error:
        print(f"agentcore_local: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
