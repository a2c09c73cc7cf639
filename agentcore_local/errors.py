"""AWS error types of the AgentCore APIs, one class each, as botocore's service models declare them.

Each rule raises the error where it lives; `api/protocol.py` renders every one the same way
(status code, `x-amzn-ErrorType` header, JSON body), so botocore raises the matching
`client.exceptions.<Code>`.
"""

from __future__ import annotations

from typing import Any


class AgentCoreError(Exception):
    """Base: an AWS error with its HTTP status. A subclass is named for its AWS error type (its
    `code`) and gives its status in the class line: `class XException(AgentCoreError, status=N)`."""

    code = "InternalServerException"
    status = 500

    def __init_subclass__(cls, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = cls.__name__
        cls.status = status if status is not None else cls.status

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class ValidationException(AgentCoreError, status=400):
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


class ResourceNotFoundException(AgentCoreError, status=404):
    """No such runtime, version, endpoint or session (or one already terminated)."""


class AccessDeniedException(AgentCoreError, status=403):
    """A request the emulator will not serve (a Host that is not its own: host_check.py)."""


class ConflictException(AgentCoreError, status=409):
    """The resource exists already, or is busy (CREATING, UPDATING) for this change."""


class RetryableConflictException(AgentCoreError, status=409):
    """The request was refused before it started anything: safe to send again."""


class ServiceQuotaExceededException(AgentCoreError, status=402):
    """Past a limit: sessions at once (serve --max-sessions), or the session storage quota."""


class RuntimeClientError(AgentCoreError, status=424):
    """The agent's compute failed or answered with an error."""


class InternalServerException(AgentCoreError, status=500):
    """agentcore_local itself failed (a bug): what AWS answers for its own faults."""
