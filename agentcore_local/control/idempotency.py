"""`clientToken` idempotency: a retry with the same token gets the first call's answer.

The model marks `clientToken` an idempotency token on CreateAgentRuntime, UpdateAgentRuntime,
CreateAgentRuntimeEndpoint, UpdateAgentRuntimeEndpoint, DeleteAgentRuntime(Endpoint) and
StopRuntimeSession. The same token with different parameters is refused, as AWS's
ValidationExceptionReason `IdempotentParameterMismatchException` names it. How long AWS keeps a
token is not documented; eight hours here, and at most `size` tokens, in memory only.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..errors import ValidationException

TOKEN = "clientToken"


def fingerprint(params: dict[str, Any]) -> str:
    """The request minus its token, so a retry matches and a different request does not."""
    rest = {k: v for k, v in params.items() if k != TOKEN}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=repr).encode()).hexdigest()


class IdempotencyCache:
    """(operation, token) -> the answer the first call got."""

    def __init__(self, clock: Callable[[], float], ttl: float = 8 * 3600, size: int = 1000) -> None:
        self.clock, self.ttl, self.size = clock, ttl, size
        self._answers: OrderedDict[tuple[str, str], tuple[float, str, Any]] = OrderedDict()

    def replay(self, operation: str, params: dict[str, Any]) -> Any | None:
        """The first answer for this token, None when there is none (or the request has no token)."""
        token = params.get(TOKEN)
        if not token:
            return None
        entry = self._answers.get((operation, token))
        if entry is None:
            return None
        stored_at, print_, answer = entry
        if self.clock() - stored_at > self.ttl:
            del self._answers[(operation, token)]
            return None
        if print_ != fingerprint(params):
            raise ValidationException(
                f"clientToken {token} was already used for a different {operation} request; "
                "send a new token for a new request",
                TOKEN,
                reason="IdempotentParameterMismatchException",
            )
        return answer

    def remember(self, operation: str, params: dict[str, Any], answer: Any) -> None:
        token = params.get(TOKEN)
        if not token:
            return
        self._answers[(operation, token)] = (self.clock(), fingerprint(params), answer)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)
