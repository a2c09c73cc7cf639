"""The exception deployment code raises for failures a user can act on, and their one-line rendering."""

from __future__ import annotations

from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError

AUTH_ERRORS = {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"}


class DeployError(Exception):
    """An expected failure of a deployment step; deploy.py's main() prints it as one line."""


def describe(error: Exception) -> str:
    """One actionable line for an expected failure."""
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials found: run `aws configure` or `aws sso login`, or export AWS_PROFILE"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Error")
        message = " ".join(str(error.response.get("Error", {}).get("Message", "")).split())
        line = f"{error.operation_name} failed: {code}: {message}"
        if code in AUTH_ERRORS:
            line += " (refresh your AWS credentials: aws sso login / aws configure)"
        elif "AccessDenied" in code:
            line += " (your AWS identity lacks this permission)"
        return line
    if isinstance(error, ParamValidationError):
        return "invalid request: " + " ".join(str(error.kwargs.get("report", error)).split())
    return " ".join(str(error).split())
