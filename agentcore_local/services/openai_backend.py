"""A model backend for bedrock_runtime.py: Converse requests answered by an OpenAI-compatible server.

The way LocalStack's Bedrock emulation is backed by Ollama: the agent keeps speaking Converse
(Strands' BedrockModel, as in the container), and this module translates each call into one
chat-completions request (vLLM, llama.cpp, LM Studio, or Ollama's /v1) and the answer back
into ConverseStream events. Text and tool calls are translated; images and documents are not.
The server's answer arrives whole and is then streamed as events.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from .bedrock_runtime import BedrockRuntimeError, Event, ModelError

STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filtered",
}
INFERENCE = {
    "maxTokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "stopSequences": "stop",
}


class ThrottlingError(BedrockRuntimeError):
    """The server said 429; Strands retries ThrottlingException with backoff."""

    code, status = "ThrottlingException", 429


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n\n".join(b["text"] for b in blocks if "text" in b)


def _tool_result_text(result: dict[str, Any]) -> str:
    parts = [c["text"] if "text" in c else json.dumps(c.get("json")) for c in result.get("content", [])]
    return "\n".join(parts)


def chat_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Converse `system` + `messages` as chat-completions messages (tool results become role "tool")."""
    out: list[dict[str, Any]] = []
    system = _text(request.get("system") or [])
    if system:
        out.append({"role": "system", "content": system})
    for message in request["messages"]:
        blocks = message["content"]
        if message["role"] == "assistant":
            calls = [
                {
                    "id": b["toolUse"]["toolUseId"],
                    "type": "function",
                    "function": {
                        "name": b["toolUse"]["name"],
                        "arguments": json.dumps(b["toolUse"]["input"]),
                    },
                }
                for b in blocks
                if "toolUse" in b
            ]
            out.append(
                {
                    "role": "assistant",
                    "content": _text(blocks) or None,
                    **({"tool_calls": calls} if calls else {}),
                }
            )
            continue
        # Tool results answer the assistant's calls, so they come first, each as its own message.
        for b in blocks:
            if "toolResult" in b:
                result = b["toolResult"]
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": result["toolUseId"],
                        "content": _tool_result_text(result),
                    }
                )
        if _text(blocks):
            out.append({"role": "user", "content": _text(blocks)})
    return out


def chat_request(request: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The whole chat-completions body for a Converse request."""
    body: dict[str, Any] = {
        "model": model or request["modelId"],
        "messages": chat_messages(request),
        "stream": False,
    }
    config = request.get("toolConfig") or {}
    tools = [
        {
            "type": "function",
            "function": {
                "name": spec["name"],
                "description": spec.get("description", ""),
                "parameters": spec["inputSchema"]["json"],
            },
        }
        for spec in (t["toolSpec"] for t in config.get("tools", []) if "toolSpec" in t)  # cachePoints dropped
    ]
    if tools:
        body["tools"] = tools
        choice = config.get("toolChoice", {"auto": {}})
        if "any" in choice:
            body["tool_choice"] = "required"
        elif "tool" in choice:
            body["tool_choice"] = {"type": "function", "function": {"name": choice["tool"]["name"]}}
        else:
            body["tool_choice"] = "auto"
    for ours, theirs in INFERENCE.items():
        if ours in (request.get("inferenceConfig") or {}):
            body[theirs] = request["inferenceConfig"][ours]
    return body


def converse_events(answer: dict[str, Any], latency_ms: int) -> list[Event]:
    """A chat-completions answer as the ConverseStream events of one assistant message."""
    try:
        choice = answer["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as error:
        raise ModelError(f"the server's answer has no choices[0].message: {str(answer)[:300]}") from error
    events: list[Event] = [{"messageStart": {"role": "assistant"}}]
    if message.get("content"):
        events += [
            {"contentBlockStart": {"start": {}}},
            {"contentBlockDelta": {"delta": {"text": message["content"]}}},
            {"contentBlockStop": {}},
        ]
    calls = message.get("tool_calls") or []
    for call in calls:
        arguments = call["function"].get("arguments") or "{}"
        if not isinstance(arguments, str):  # some servers send an object, not the JSON text the spec says
            arguments = json.dumps(arguments)
        start = {
            "toolUse": {
                "toolUseId": call.get("id") or f"call-{len(events)}",
                "name": call["function"]["name"],
            }
        }
        events += [
            {"contentBlockStart": {"start": start}},
            {"contentBlockDelta": {"delta": {"toolUse": {"input": arguments}}}},
            {"contentBlockStop": {}},
        ]
    stop = "tool_use" if calls else STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn")
    usage = answer.get("usage") or {}
    tokens = {
        "inputTokens": usage.get("prompt_tokens", 0),
        "outputTokens": usage.get("completion_tokens", 0),
        "totalTokens": usage.get("total_tokens", 0),
    }
    events += [
        {"messageStop": {"stopReason": stop}},
        {"metadata": {"usage": tokens, "metrics": {"latencyMs": latency_ms}}},
    ]
    return events


class OpenAIBackend:
    """Answers Converse through `base_url`/chat/completions (base_url ends in /v1 for most servers)."""

    def __init__(
        self, base_url: str, model: str | None = None, api_key: str = "none", name: str = "openai"
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.name = model, name
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.timeout = httpx.Timeout(300, connect=5)  # a local model on a CPU can take minutes per answer

    async def respond(self, request: dict[str, Any]) -> list[Event]:
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as http:
                answer = await http.post(
                    self.url, json=chat_request(request, self.model), headers=self._headers
                )
        except httpx.HTTPError as error:
            raise ModelError(
                f"cannot reach the {self.name} server at {self.url} ({error!r}); is it running?"
            ) from error
        if answer.status_code == 429:
            raise ThrottlingError(f"the {self.name} server is throttling: {answer.text[:300]}")
        if answer.status_code >= 400:
            raise ModelError(f"the {self.name} server answered {answer.status_code}: {answer.text[:300]}")
        try:
            body = answer.json()
        except ValueError as error:
            raise ModelError(f"the {self.name} server's answer is not JSON: {answer.text[:300]}") from error
        return converse_events(body, int((time.perf_counter() - started) * 1000))
