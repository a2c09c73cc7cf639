"""The one error layer of client.py and deploy.py.

Library code (cloud/) raises the domain exceptions below `from` the botocore error that
caused them; only the CLIs' main() turns an error into one line and an exit code, through
`failure`, so both CLIs read botocore errors the same way and exit the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

EXIT_FAILURE, EXIT_INTERRUPTED = 1, 130  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C
AUTH_ERRORS = {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"}


class UserError(Exception):
    """A failure the user can act on (a missing setting, bad input, a refused step); says what to do."""


class DeployError(UserError):
    """An expected failure of a deployment step."""


class TurnFailed(UserError):
    """The agent answered, but with an error (or the answer stream broke off)."""


# What main() catches: everything else is a bug and keeps its traceback.
CLI_ERRORS = (UserError, BotoCoreError, ClientError, KeyboardInterrupt)


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ClientError (EventStreamError included), else ""."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(error: ClientError) -> str:
    """The AWS error message, on one line."""
    return " ".join(str(error.response.get("Error", {}).get("Message", "")).split())


def explain(error: BaseException, hints: Mapping[str, str] | None = None) -> str:
    """One actionable line for an expected failure; `hints` adds a CLI's own advice per AWS error code."""
    if isinstance(error, EndpointConnectionError):
        return (
            f"cannot reach {error.kwargs.get('endpoint_url')}: "
            "is agentcore_local running (make serve-local)? "
            "To use AWS, unset AWS_ENDPOINT_URL_BEDROCK_AGENTCORE(_CONTROL)"
        )
    if isinstance(error, NoCredentialsError):
        return (
            "no AWS credentials found: run `aws configure` or `aws sso login`, or export AWS_PROFILE "
            "(or use agentcore_local: make serve-local)"
        )
    if isinstance(error, ReadTimeoutError):
        return (
            "no answer within the read timeout; the request may still be running, so it was not re-sent "
            "(raise --read-timeout; for a turn, look with: python client.py exec 'ls -A')"
        )
    if isinstance(error, ParamValidationError):
        return "invalid request: " + " ".join(str(error.kwargs.get("report", error)).split())
    if isinstance(error, ClientError):
        code = error_code(error) or "Error"
        line = f"{error.operation_name} failed: {code}: {error_message(error)}"
        if hints and code in hints:
            line += f" ({hints[code]})"
        elif code in AUTH_ERRORS:
            line += " (refresh your AWS credentials: aws sso login / aws configure)"
        elif "AccessDenied" in code:
            line += " (your AWS identity lacks this permission)"
        return line
    return " ".join(str(error).split())


def failure(error: BaseException, hints: Mapping[str, str] | None = None) -> tuple[str, int]:
    """The line main() prints for an error in CLI_ERRORS, and the exit code it returns."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return f"error: {explain(error, hints)}", EXIT_FAILURE
