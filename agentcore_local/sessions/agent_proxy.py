"""HTTP to a session's agent: one invocation forwarded as AgentCore forwards it, the answer
relayed as it comes (JSON, or the agent's text/event-stream)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from ..errors import RuntimeClientError
from ..sandbox import Compute

log = logging.getLogger("agentcore_local.agent_proxy")

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
# Request headers the agent sees, as AgentCore forwards them.
FORWARDED = {
    "content-type",
    "accept",
    "x-amzn-bedrock-agentcore-runtime-user-id",
    "traceparent",
    "tracestate",
    "baggage",
    "x-amzn-trace-id",
    "mcp-session-id",  # MCP's streamable HTTP (InvokeAgentRuntime's mcpSessionId, ...)
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
}
# Answer headers InvokeAgentRuntime passes back (botocore 1.44.5's InvokeAgentRuntimeResponse).
RETURNED = (
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "x-amzn-trace-id",
    "traceparent",
    "tracestate",
    "baggage",
)
FORWARDED_PREFIX = "x-amzn-bedrock-agentcore-runtime-custom-"
MAX_CARD_BYTES = 1_000_000  # an A2A agent card is a few KB; this emulator's cap on reading one


def agent_error_message(body: bytes, limit: int = 2000) -> str:
    """The agent's own words from an error answer: the `error` of its JSON body, else the body as text."""
    text = body.decode(errors="replace")
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            text = parsed["error"]
    return text[:limit]


def forwarded_headers(headers: dict[str, str], session_id: str) -> dict[str, str]:
    kept = {
        k: v for k, v in headers.items() if k.lower() in FORWARDED or k.lower().startswith(FORWARDED_PREFIX)
    }
    kept[SESSION_HEADER] = session_id
    return kept


async def send_invocation(
    compute: Compute, session_id: str, payload: bytes, headers: dict[str, str], path: str = "/invocations"
) -> httpx.Response:
    """POST `path` (the protocol's: /invocations, /mcp, /) to the agent; its streaming answer.
    httpx.TransportError when nobody answers, RuntimeClientError (with the agent's words) when the
    agent answers with an error."""
    request = compute.http.build_request(
        "POST", f"{compute.url}{path}", content=payload, headers=forwarded_headers(headers, session_id)
    )
    answer = await compute.http.send(request, stream=True)
    if answer.status_code >= 400:
        try:
            body = agent_error_message(await answer.aread())
        finally:
            await answer.aclose()
        raise RuntimeClientError(f"Received error ({answer.status_code}) from runtime: {body}")
    return answer


async def fetch_json(compute: Compute, session_id: str, path: str, limit: int = MAX_CARD_BYTES) -> Any:
    """GET `path` of the agent (its A2A card): the parsed JSON, or RuntimeClientError saying why not
    (an answer past `limit` bytes is cut off unread: the agent's words never fill serve's memory)."""
    request = compute.http.build_request(
        "GET", f"{compute.url}{path}", headers={SESSION_HEADER: session_id}, timeout=30.0
    )
    try:
        answer = await compute.http.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise RuntimeClientError(f"The agent's {path} is over {limit} bytes, the limit")
        finally:
            await answer.aclose()
    except httpx.HTTPError as error:
        raise RuntimeClientError(f"The agent did not answer GET {path}: {error}") from error
    if answer.status_code >= 400:
        raise RuntimeClientError(
            f"Received error ({answer.status_code}) from runtime: {agent_error_message(bytes(body))}"
        )
    try:
        return json.loads(body)
    except ValueError:
        raise RuntimeClientError(f"The agent's {path} is not JSON: {bytes(body[:200])!r}") from None


async def relay(answer: httpx.Response, session_id: str, done: Callable[[], None]) -> AsyncIterator[bytes]:
    """The answer's bytes as they come; `done` once it has ended (or the compute stopped mid-answer)."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.HTTPError as error:
        log.info("session_id=<%s> | answer cut short: %s", session_id, error)
    finally:
        await answer.aclose()
        done()
