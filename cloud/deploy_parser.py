"""deploy.py's command line: its subcommands and options (their help is shown in docs/deploy.md), and the
seed's `--create` / `--update RUNTIME_ID` flags rewritten as commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence

from cloud import agent_runtime as rt
from cloud import backup_bucket, clients

DEFAULT_NAME = "coding_agent"
DEFAULT_REPOSITORY = "coding-agent"


def _bucket_name(text: str) -> str:
    try:
        return backup_bucket.check_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def build_parser(handlers: Mapping[str, Callable]) -> argparse.ArgumentParser:
    """deploy.py's command line; `handlers` maps each command to the function that runs it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--name", default=DEFAULT_NAME, help="runtime name: letters, digits, _ (default: %(default)s)"
    )
    common.add_argument("--region", help=clients.REGION_HELP)

    confirm = argparse.ArgumentParser(add_help=False)
    confirm.add_argument(
        "-y", "--yes", action="store_true", help="do not ask before resetting or deleting storage"
    )
    confirm.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait until READY, or gone (default: wait)",
    )
    confirm.add_argument(
        "--wait-timeout",
        type=int,
        default=900,
        metavar="S",
        help="give up waiting after S seconds (default: %(default)s)",
    )

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--image", metavar="URI", help="container image in ECR, built for linux/arm64")
    config.add_argument("--role-arn", metavar="ARN", help="execution role (`deploy.py role` prints it)")
    config.add_argument(
        "--mount-path", metavar="PATH", help=f"session storage mount (new runtime: {rt.DEFAULT_MOUNT_PATH})"
    )
    config.add_argument(
        "--network-mode", choices=["PUBLIC", "VPC"], help="network mode (new runtime: PUBLIC)"
    )
    env_help = "set an environment variable (repeatable); the others are kept"
    config.add_argument("--env", action="append", default=[], type=_env_pair, metavar="K=V", help=env_help)
    config.add_argument(
        "--unset-env", action="append", default=[], metavar="K", help="remove an environment variable"
    )
    config.add_argument(
        "--idle-timeout", type=int, metavar="S", help="stop an idle session's compute after S s (60-28800)"
    )
    config.add_argument(
        "--max-lifetime", type=int, metavar="S", help="stop a session's compute after S s (60-28800)"
    )
    config.add_argument(
        "--skip-arch-check", action="store_true", help="do not check in ECR that the image is arm64"
    )
    config.add_argument(
        "--backup-bucket",
        type=_bucket_name,
        metavar="NAME",
        help="back checkpoints up to this S3 bucket (created if missing; sets BACKUP_BUCKET)",
    )
    config.add_argument(
        "--backup-expiry-days",
        type=int,
        default=backup_bucket.EXPIRY_DAYS,
        metavar="N",
        help="the bucket's expiry rule: objects after N days (default: %(default)s)",
    )

    parser = argparse.ArgumentParser(
        prog="deploy.py",
        description="Deploy the coding agent to Amazon Bedrock AgentCore Runtime, with session storage.",
        epilog="Without a command: ensure. The seed's flags still work: --create is `create`, "
        "--update RUNTIME_ID is `update RUNTIME_ID`. Updates change only what you pass; everything else "
        "is read from the runtime and sent back. `deploy.py COMMAND --help` lists a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, parents: list, runtime_id: bool = False) -> None:
        sub = commands.add_parser(name, help=help, description=help, parents=parents)
        if runtime_id:
            sub.add_argument(
                "runtime_id", nargs="?", metavar="RUNTIME_ID", help="the runtime's id (default: by --name)"
            )
        sub.set_defaults(func=handlers[name])

    add(
        "ensure",
        "create the runtime, or update it if one of that name exists",
        [common, config, confirm],
    )
    add("create", "create the runtime", [common, config, confirm])
    add(
        "update",
        "update the runtime, keeping what you do not pass",
        [common, config, confirm],
        True,
    )
    add("status", "show the runtime's configuration and status", [common], True)
    add("delete", "delete the runtime and every session's storage", [common, confirm], True)
    commands.choices["delete"].add_argument(
        "--keep-backups",
        action="store_true",
        help="keep the runtime's backups in S3 (they expire by the bucket's rule; no runtime restores them)",
    )
    role_help = "create or update the execution role from iam/ (idempotent)"
    role = commands.add_parser("role", parents=[common], help=role_help, description=role_help)
    role.add_argument("--role-name", help="IAM role name (default: AgentCoreRuntime-NAME)")
    role.add_argument(
        "--repository", default=DEFAULT_REPOSITORY, help="ECR repository (default: %(default)s)"
    )
    role.add_argument("--account", help="AWS account id (default: from STS)")
    role.add_argument(
        "--backup-bucket",
        type=_bucket_name,
        metavar="NAME",
        help="also allow s3:GetObject and s3:PutObject on NAME/v2/* (backups)",
    )
    role.set_defaults(func=handlers["role"])
    return parser


def seed_flags(argv: Sequence[str]) -> list[str]:
    """Rewrite the seed's `--create` / `--update RUNTIME_ID` as commands; no command at all means ensure."""
    argv = list(argv)
    if "--create" in argv:
        argv.remove("--create")
        return ["create", *argv]
    for i, arg in enumerate(argv):
        if arg.startswith("--update="):
            return ["update", arg.split("=", 1)[1], *argv[:i], *argv[i + 1 :]]
        if arg == "--update":
            return ["update", *argv[i + 1 : i + 2], *argv[:i], *argv[i + 2 :]]
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["ensure", *argv]
    return argv
