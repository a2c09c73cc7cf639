#!/usr/bin/env python3
"""Deploy the coding agent to Amazon Bedrock AgentCore Runtime. Run `python deploy.py --help`."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from cloud import agent_runtime as rt
from cloud import backup_bucket, clients, execution_role, image_arch, runtime_record
from cloud.errors import CLI_ERRORS, DeployError, error_code, failure

DEFAULT_NAME = "coding_agent"
DEFAULT_REPOSITORY = "coding-agent"


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise DeployError("no terminal to confirm on: pass --yes to go ahead")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


@dataclass
class Context:
    """Everything deploy.py touches outside itself, so tests can hand in stubbed clients and a fake clock."""

    region: str
    control: Any
    client: Callable[[str, str], Any] = clients.aws  # (service, region) -> boto3 client
    out: TextIO = field(default_factory=lambda: sys.stdout)
    confirm: Callable[[str], bool] = _ask
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    fetch: Callable[[str], bytes] = image_arch.download
    record_path: Path = runtime_record.DEFAULT_PATH
    new_token: Callable[[], str] = lambda: str(uuid.uuid4())

    @classmethod
    def from_env(cls, region: str | None, env: Mapping[str, str] = os.environ) -> Context:
        """The real context: the environment read once (region, where the runtime record goes)."""
        region = clients.resolve_region(region, env)
        return cls(region, clients.control_plane(region), record_path=runtime_record.record_path(env))

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def status_line(self) -> Callable[[str, float], None]:
        """Show each status as it changes (rewritten in place with the elapsed time on a terminal)."""
        tty, seen = self.out.isatty(), []

        def report(status: str, elapsed: float) -> None:
            line = f"  status: {status} ({elapsed:.0f} s)"
            if tty:
                end = "\n" if status in rt.SETTLED or status == "DELETED" else ""
                print(f"\r{line}\033[K", end=end, file=self.out, flush=True)
            elif not seen or seen[-1] != status:
                self.say(line)
            seen.append(status)

        return report


# --- commands ----------------------------------------------------------------------------------------


def cmd_ensure(args: argparse.Namespace, ctx: Context) -> int:
    found = rt.find_by_name(ctx.control, args.name)
    if found is None:
        ctx.say(f"no runtime named {args.name} in {ctx.region}: creating it")
        return cmd_create(args, ctx)
    return cmd_update(args, ctx, found["agentRuntimeId"])


def cmd_create(args: argparse.Namespace, ctx: Context) -> int:
    changes = _changes(args)
    request = rt.create_request(args.name, changes, ctx.new_token())
    _check_image(args, ctx, request["agentRuntimeArtifact"]["containerConfiguration"]["containerUri"])
    _ensure_backup_bucket(args, ctx)
    try:
        answer = ctx.control.create_agent_runtime(**request)
    except ClientError as e:
        if error_code(e) == "ConflictException":
            raise DeployError(
                f"a runtime named {args.name} already exists: use `python deploy.py ensure`"
            ) from e
        raise
    ctx.say(f"creating runtime {answer['agentRuntimeId']} (version {answer['agentRuntimeVersion']})")
    return _finish(args, ctx, answer)


def cmd_update(args: argparse.Namespace, ctx: Context, runtime_id: str | None = None) -> int:
    runtime_id = runtime_id or getattr(args, "runtime_id", None) or _id_by_name(ctx, args.name)
    current = ctx.control.get_agent_runtime(agentRuntimeId=runtime_id)
    status, version = current["status"], current["agentRuntimeVersion"]
    if status not in rt.SETTLED:
        raise DeployError(
            f"runtime {runtime_id} is {status}: wait for it (python deploy.py status) and retry"
        )
    _ensure_backup_bucket(args, ctx)
    fields = rt.updatable_fields(ctx.control)
    request = rt.update_request(current, _changes(args), fields)
    changed = rt.changed_fields(rt.current_config(current, fields), request)
    if not changed:
        if status != "READY":
            reason = " ".join(str(current.get("failureReason") or "no reason given").split())
            raise DeployError(f"runtime {runtime_id} is {status} ({reason}) and nothing was asked to change")
        ctx.say(f"runtime {runtime_id} is up to date (version {version}, READY): nothing to change")
        _record(ctx, current)
        return 0
    if "agentRuntimeArtifact" in changed:
        _check_image(args, ctx, request["agentRuntimeArtifact"]["containerConfiguration"]["containerUri"])
    mount = request["filesystemConfigurations"][0]["sessionStorage"]["mountPath"]
    ctx.say(f"runtime {runtime_id} version {version}: changing {', '.join(changed)}")
    ctx.say(
        f"warning: the update makes a new version, and the session storage of EVERY session of this runtime "
        f"resets (all files under {mount} are lost)"
    )
    if bucket := request.get("environmentVariables", {}).get("BACKUP_BUCKET"):
        ctx.say(
            f"  backups in s3://{bucket}: each session restores its files and conversation from its last "
            "backup on its next invocation (work after that backup is lost)"
        )
    if not args.yes and not ctx.confirm("update the runtime?"):
        raise DeployError("update cancelled; nothing was changed")
    answer = ctx.control.update_agent_runtime(agentRuntimeId=runtime_id, **request)
    ctx.say(f"updating runtime {runtime_id} to version {answer['agentRuntimeVersion']}")
    return _finish(args, ctx, answer)


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    runtime = ctx.control.get_agent_runtime(agentRuntimeId=args.runtime_id or _id_by_name(ctx, args.name))
    for key, value in rt.summary(runtime).items():
        ctx.say(f"{key + ':':17}{value}")
    return 0


def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    runtime_id = args.runtime_id or _id_by_name(ctx, args.name)
    arn = ctx.control.get_agent_runtime(agentRuntimeId=runtime_id)["agentRuntimeArn"]
    ctx.say(f"warning: deleting runtime {runtime_id} ends its sessions and deletes every session's storage")
    if not args.yes and not ctx.confirm("delete the runtime?"):
        raise DeployError("delete cancelled; nothing was changed")
    ctx.control.delete_agent_runtime(agentRuntimeId=runtime_id)
    if args.wait:
        rt.wait_for(ctx.control, runtime_id, "DELETED", **_waiting(args, ctx))
    if runtime_record.forget_record(arn, ctx.record_path):
        ctx.say(f"removed {ctx.record_path}")
    ctx.say(f"deleted runtime {runtime_id}" if args.wait else f"deleting runtime {runtime_id}")
    return 0


def cmd_role(args: argparse.Namespace, ctx: Context) -> int:
    account = args.account or ctx.client("sts", ctx.region).get_caller_identity()["Account"]
    values = {"account_id": account, "region": ctx.region, "repository": args.repository}
    trust = execution_role.render(execution_role.IAM_DIR / "trust-policy.json", **values)
    permissions = execution_role.render(execution_role.IAM_DIR / "permissions-policy.json", **values)
    if args.backup_bucket:
        permissions = execution_role.with_backup_bucket(permissions, args.backup_bucket)
    role_name = args.role_name or f"AgentCoreRuntime-{args.name}"
    arn, changed = execution_role.ensure_role(ctx.client("iam", ctx.region), role_name, trust, permissions)
    ctx.say(f"role {role_name}: {', '.join(changed) or 'up to date'}")
    ctx.say(arn)
    return 0


# --- helpers -----------------------------------------------------------------------------------------


def _changes(args: argparse.Namespace) -> rt.Changes:
    return rt.Changes(
        image=args.image,
        role_arn=args.role_arn,
        mount_path=args.mount_path,
        network_mode=args.network_mode,
        env=dict(args.env) | ({"BACKUP_BUCKET": args.backup_bucket} if args.backup_bucket else {}),
        unset_env=tuple(args.unset_env),
        idle_timeout=args.idle_timeout,
        max_lifetime=args.max_lifetime,
    )


def _ensure_backup_bucket(args: argparse.Namespace, ctx: Context) -> None:
    if not args.backup_bucket:
        return
    s3 = ctx.client("s3", ctx.region)
    changed = backup_bucket.ensure_bucket(s3, args.backup_bucket, ctx.region, args.backup_expiry_days)
    ctx.say(f"backup bucket {args.backup_bucket}: {', '.join(changed) or 'up to date'}")
    if "created" in changed:
        ctx.say(
            f"  let the execution role use it: python deploy.py role --backup-bucket {args.backup_bucket}"
        )


def _bucket_name(text: str) -> str:
    try:
        return backup_bucket.check_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _id_by_name(ctx: Context, name: str) -> str:
    found = rt.find_by_name(ctx.control, name)
    if found is None:
        raise DeployError(
            f"no runtime named {name} in {ctx.region}: create it with `python deploy.py ensure`"
        )
    return found["agentRuntimeId"]


def _check_image(args: argparse.Namespace, ctx: Context, uri: str) -> None:
    if args.skip_arch_check:
        ctx.say("architecture check skipped (--skip-arch-check)")
        return
    endpoint = ctx.control.meta.endpoint_url
    if ".amazonaws.com" not in endpoint:  # agentcore_local: it never pulls from ECR, so do not ask real ECR
        ctx.say(f"architecture check skipped: the control plane at {endpoint} is not AWS")
        return
    ctx.say(image_arch.check_arm64(uri, lambda region: ctx.client("ecr", region), ctx.fetch))


def _waiting(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    return {"timeout": args.wait_timeout, "report": ctx.status_line(), "sleep": ctx.sleep, "clock": ctx.clock}


def _finish(args: argparse.Namespace, ctx: Context, answer: dict[str, Any]) -> int:
    if not args.wait:
        _record(ctx, answer)
        ctx.say("not waiting: follow it with `python deploy.py status`")
        return 0
    _record(ctx, rt.wait_for(ctx.control, answer["agentRuntimeId"], "READY", **_waiting(args, ctx)))
    return 0


def _record(ctx: Context, runtime: dict[str, Any]) -> None:
    path = runtime_record.write_record(
        runtime["agentRuntimeArn"], runtime["agentRuntimeId"], ctx.region, ctx.record_path
    )
    ctx.say(f"runtime ARN {runtime['agentRuntimeArn']} (written to {path} for client.py)")


# --- command line ------------------------------------------------------------------------------------


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
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

    def add(name: str, func: Callable, help: str, parents: list, runtime_id: bool = False) -> None:
        sub = commands.add_parser(name, help=help, description=help, parents=parents)
        if runtime_id:
            sub.add_argument(
                "runtime_id", nargs="?", metavar="RUNTIME_ID", help="the runtime's id (default: by --name)"
            )
        sub.set_defaults(func=func)

    add(
        "ensure",
        cmd_ensure,
        "create the runtime, or update it if one of that name exists",
        [common, config, confirm],
    )
    add("create", cmd_create, "create the runtime", [common, config, confirm])
    add(
        "update",
        cmd_update,
        "update the runtime, keeping what you do not pass",
        [common, config, confirm],
        True,
    )
    add("status", cmd_status, "show the runtime's configuration and status", [common], True)
    add("delete", cmd_delete, "delete the runtime and every session's storage", [common, confirm], True)
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
        help="also allow s3:GetObject and s3:PutObject on NAME/v1/* (backups)",
    )
    role.set_defaults(func=cmd_role)
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


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    args = build_parser().parse_args(seed_flags(sys.argv[1:] if argv is None else argv))
    try:
        ctx = ctx or Context.from_env(args.region)
        return args.func(args, ctx)
    except CLI_ERRORS as e:
        line, code = failure(e)
        print(f"deploy.py: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
