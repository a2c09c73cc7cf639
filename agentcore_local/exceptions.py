"""AWS error types of the AgentCore APIs, one class each, as botocore's service models declare them.

Each rule raises the error where it lives; `responses.py` renders every one the same way
(status code, `x-amzn-ErrorType` header, JSON body), so botocore raises the matching
`client.exceptions.<Code>`.
"""

from __future__ import annotations

from typing import Any


class AgentCoreError(Exception):
    """Base: an AWS error with its HTTP status. Subclasses set `code` and `status`."""

    code = "InternalServerException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class ValidationException(AgentCoreError):
    code = "ValidationException"
    status = 400

    """AWS's shape: `message`, `reason` (FieldValidationFailed, CannotParse, ...), `fieldList`."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        reason: str = "FieldValidationFailed",
        fields: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.fields = (
            fields if fields is not None else ([{"name": field, "message": message}] if field else [])
        )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "reason": self.reason}
        if self.fields:
            body["fieldList"] = self.fields
        return body


class ResourceNotFoundException(AgentCoreError):
    code = "ResourceNotFoundException"
    status = 404


class ConflictException(AgentCoreError):
    code = "ConflictException"
    status = 409


class RetryableConflictException(AgentCoreError):
    """The request was refused before it started anything: safe to send again."""

    code = "RetryableConflictException"
    status = 409


class ServiceQuotaExceededException(AgentCoreError):
    code = "ServiceQuotaExceededException"
    status = 402


class RuntimeClientError(AgentCoreError):
    """The agent's compute failed or answered with an error (AWS: status 424)."""

    code = "RuntimeClientError"
    status = 424


class InternalServerException(AgentCoreError):
    code = "InternalServerException"
    status = 500
