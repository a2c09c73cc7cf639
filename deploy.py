#!/usr/bin/env python3
"""Deploy the coding agent to Amazon Bedrock AgentCore Runtime. Run `python deploy.py --help`.

Each command below is the whole flow of one subcommand; the options are in cloud/deploy_parser.py,
what a command touches outside itself (clients, terminal, clock) in cloud/deploy_context.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from cloud import agent_runtime as rt
from cloud import backup_bucket, execution_role, image_arch, runtime_record
from cloud.deploy_context import Context
from cloud.deploy_parser import build_parser, seed_flags
from cloud.errors import CLI_ERRORS, DeployError, error_code, failure

__all__ = ["Context", "main", "seed_flags"]  # Context and seed_flags: the tests reach them through deploy

# --- commands ----------------------------------------------------------------------------------------


def cmd_ensure(args: argparse.Namespace, ctx: Context) -> int:
    found = rt.find_by_name(ctx.control, args.name)
    if found is None:
        ctx.say(f"no runtime named {args.name} in {ctx.region}: creating it")
        return cmd_create(args, ctx)
    return cmd_update(args, ctx, found["agentRuntimeId"])


def cmd_create(args: argparse.Namespace, ctx: Context) -> int:
    changes = _changes(args, ctx, creating=True)
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
    request = rt.update_request(current, _changes(args, ctx), fields)
    changed = rt.changed_fields(rt.current_config(current, fields), request)
    env = request.get("environmentVariables") or {}
    if changed and rt.SCOPE_VARIABLE not in env and rt.SCOPE_VARIABLE not in args.unset_env:
        # A runtime with no scope of its own: its id is one for its life, and what agentcore_local
        # keys such a runtime's backups under, so locally they carry over. On AWS its backups were
        # under v1/, which the execution role no longer grants.
        request["environmentVariables"] = {**env, rt.SCOPE_VARIABLE: runtime_id}
        changed = rt.changed_fields(rt.current_config(current, fields), request)
        if ctx.local is None:
            ctx.say(f"  its backups are now kept under its id ({rt.SCOPE_VARIABLE}={runtime_id}): "
                    "backups from before (under v1/) are not restored")  # fmt: skip
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
    runtime = ctx.control.get_agent_runtime(agentRuntimeId=runtime_id)
    arn, env = runtime["agentRuntimeArn"], runtime.get("environmentVariables") or {}
    bucket, scope = env.get("BACKUP_BUCKET"), env.get(rt.SCOPE_VARIABLE)
    ctx.say(f"warning: deleting runtime {runtime_id} ends its sessions and deletes every session's storage")
    if line := _backups_on_delete(args, ctx, bucket, scope):
        ctx.say(f"  {line}")
    if not args.yes and not ctx.confirm("delete the runtime?"):
        raise DeployError("delete cancelled; nothing was changed")
    ctx.control.delete_agent_runtime(agentRuntimeId=runtime_id)
    if args.wait:  # first: a session that is stopping may still push its last backup
        rt.wait_for(ctx.control, runtime_id, "DELETED", **_waiting(args, ctx))
    if bucket and scope and not args.keep_backups and ctx.local is None:
        gone = backup_bucket.delete_scope(ctx.client("s3", ctx.region), bucket, scope)
        ctx.say(f"deleted its backups: {gone} objects (every version) under s3://{bucket}/v2/{scope}/")
    if runtime_record.forget_record(arn, ctx.record_path):
        ctx.say(f"removed {ctx.record_path}")
    ctx.say(f"deleted runtime {runtime_id}" if args.wait else f"deleting runtime {runtime_id}")
    return 0


def cmd_role(args: argparse.Namespace, ctx: Context) -> int:
    if ctx.local is not None:
        raise DeployError(
            "`deploy.py role` makes an IAM role in AWS; agentcore_local needs none: "
            "`python deploy.py ensure` creates the local runtime as it is"
        )
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


def _changes(args: argparse.Namespace, ctx: Context, creating: bool = False) -> rt.Changes:
    env = dict(args.env)
    if args.backup_bucket and ctx.local is None:  # agentcore_local serves its own bucket
        env["BACKUP_BUCKET"] = args.backup_bucket
    if creating and rt.SCOPE_VARIABLE not in env:  # this runtime's life: a re-created one gets another
        env[rt.SCOPE_VARIABLE] = ctx.new_scope()
    image, role_arn = args.image, args.role_arn
    if creating and ctx.local is not None:
        local_image, local_role = rt.local_defaults(args.name, ctx.local)
        image, role_arn = image or local_image, role_arn or local_role
    return rt.Changes(
        image=image,
        role_arn=role_arn,
        mount_path=args.mount_path,
        network_mode=args.network_mode,
        env=env,
        unset_env=tuple(args.unset_env),
        idle_timeout=args.idle_timeout,
        max_lifetime=args.max_lifetime,
    )


def _backups_on_delete(args: argparse.Namespace, ctx: Context, bucket: str | None, scope: str | None) -> str:
    """What the delete does to the runtime's backups, for its warning."""
    if ctx.local is not None:
        kept = " (--keep-backups keeps nothing locally)" if args.keep_backups else ""
        return f"and its backups: agentcore_local deletes them with the runtime{kept}"
    if not bucket:
        return ""
    if not scope:
        return (
            f"its backups in s3://{bucket}/v1/ are keyed by session id alone and are NOT deleted: "
            "they expire by the bucket's rule"
        )
    where = f"s3://{bucket}/v2/{scope}/"
    if args.keep_backups:
        return f"its backups under {where} are kept (--keep-backups) until the bucket's expiry rule ends them"
    return f"and its backups: every object under {where} (keep them with --keep-backups)"


def _ensure_backup_bucket(args: argparse.Namespace, ctx: Context) -> None:
    if not args.backup_bucket:
        return
    if ctx.local is not None:
        ctx.say(
            "--backup-bucket is not used locally: agentcore_local serves the backups (serve --backup-bucket)"
        )
        return
    s3 = ctx.client("s3", ctx.region)
    changed = backup_bucket.ensure_bucket(s3, args.backup_bucket, ctx.region, args.backup_expiry_days)
    ctx.say(f"backup bucket {args.backup_bucket}: {', '.join(changed) or 'up to date'}")
    if "created" in changed:
        ctx.say(
            f"  let the execution role use it: python deploy.py role --backup-bucket {args.backup_bucket}"
        )


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
    if ctx.local is not None or ".amazonaws.com" not in endpoint:  # agentcore_local never pulls from ECR
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

COMMANDS = {
    "ensure": cmd_ensure,
    "create": cmd_create,
    "update": cmd_update,
    "status": cmd_status,
    "delete": cmd_delete,
    "role": cmd_role,
}


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    args = build_parser(COMMANDS).parse_args(seed_flags(sys.argv[1:] if argv is None else argv))
    try:
        ctx = ctx or Context.from_env(args.region)
        return args.func(args, ctx)
    except CLI_ERRORS as e:
        line, code = failure(e)
        print(f"deploy.py: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
