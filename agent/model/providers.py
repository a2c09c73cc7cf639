"""MODEL_PROVIDER -> a Strands Model: the one registry of model providers.

Each provider declares its builder and the environment variables it reads. agent/service/settings.py
reads exactly those variables (Settings.provider_env), and agentcore_local's `serve` passes
them from its own environment to every session, so adding a provider is one entry here plus
its test. This module imports nothing heavy at import time (the provider SDKs are imported by
their builder, only when chosen), so the emulator's CLI edge can read the lists cheaply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from strands.models.model import Model

# Read by the agent whatever the provider (agent/service/settings.py).
MODEL_VARIABLES = ("MODEL_PROVIDER", "MODEL_ID")


class Settings(Protocol):
    """What a builder reads of the service's settings (agent/service/settings.py Settings has it):
    a protocol, so this layer never imports the service layer that reads the environment."""

    model_provider: str
    model_id: str
    scripted_plan: Path
    workspace: Path
    provider_env: Mapping[str, str]


class ModelConfigError(RuntimeError):
    """The chosen provider cannot be built: a missing package, credential or setting."""


@dataclass(frozen=True)
class Provider:
    name: str
    build: Callable[[Settings], Model]
    variables: tuple[str, ...] = ()  # what `build` reads from Settings.provider_env (boto3: os.environ)


def _scripted(settings: Settings) -> Model:
    from agent.model.scripted import ScriptedModel

    return ScriptedModel(settings.scripted_plan, settings.workspace)


def _bedrock(settings: Settings) -> Model:
    import boto3
    from strands.models.bedrock import BedrockModel

    region = settings.provider_env.get("AWS_REGION") or settings.provider_env.get("AWS_DEFAULT_REGION")
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise ModelConfigError(
            "MODEL_PROVIDER=bedrock found no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID, "
            "or run offline with MODEL_PROVIDER=scripted"
        )
    return BedrockModel(model_id=settings.model_id, boto_session=session)


def _openai(settings: Settings) -> Model:
    base_url = settings.provider_env.get("OPENAI_BASE_URL")
    if not base_url:
        raise ModelConfigError("MODEL_PROVIDER=openai needs OPENAI_BASE_URL (an OpenAI-compatible endpoint)")
    try:
        from strands.models.openai import OpenAIModel
    except ImportError as e:
        raise ModelConfigError("MODEL_PROVIDER=openai needs: pip install 'strands-agents[openai]'") from e
    # Local servers (vLLM, llama.cpp, LM Studio) accept any key; the client insists on one.
    client_args = {"base_url": base_url, "api_key": settings.provider_env.get("OPENAI_API_KEY", "none")}
    return OpenAIModel(client_args=client_args, model_id=settings.model_id)


def _ollama(settings: Settings) -> Model:
    try:
        from strands.models.ollama import OllamaModel
    except ImportError as e:
        raise ModelConfigError("MODEL_PROVIDER=ollama needs: pip install 'strands-agents[ollama]'") from e
    host = settings.provider_env.get("OLLAMA_HOST", "http://127.0.0.1:11434")
    return OllamaModel(host=host, model_id=settings.model_id)


_AWS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("bedrock", _bedrock, _AWS),
        Provider("scripted", _scripted, ("SCRIPTED_PLAN",)),
        Provider("openai", _openai, ("OPENAI_BASE_URL", "OPENAI_API_KEY")),
        Provider("ollama", _ollama, ("OLLAMA_HOST",)),
    )
}


def provider_variables() -> tuple[str, ...]:
    """Every variable some provider reads, in registry order, without repeats."""
    return tuple(dict.fromkeys(name for p in PROVIDERS.values() for name in p.variables))


def model_variables() -> tuple[str, ...]:
    """What a host of this agent (agentcore_local serve) must pass on for every provider to work."""
    return (*MODEL_VARIABLES, *provider_variables())


def rehearse_model(model: Model) -> None:
    """One ConverseStream through a Bedrock model's boto3 client, answered in this process and never
    sent (agent/service/warmup.py): the first turn's model call then finds the client's first-time work
    (endpoint rules, credentials, signing) done. Other providers: nothing to rehearse."""
    client = getattr(model, "client", None)
    if getattr(getattr(client, "meta", None), "service_model", None) is None:
        return
    if client.meta.service_model.service_name != "bedrock-runtime":
        return
    from botocore.exceptions import ClientError

    from agent.rehearsal import answered_in_process

    marker = f"agentcore-warm-up-{os.urandom(8).hex()}"  # the model id: it is in the request's path
    body = json.dumps({"__type": "ValidationException", "message": "warm-up rehearsal"}).encode()
    with answered_in_process(client, "before-send.bedrock-runtime.ConverseStream", marker, 400, body):
        try:
            client.converse_stream(modelId=marker, messages=[{"role": "user", "content": [{"text": "-"}]}])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise


def build_model(settings: Settings) -> Model:
    """The model for `settings.model_provider`, or ModelConfigError with one line saying what to fix."""
    provider = PROVIDERS.get(settings.model_provider)
    if provider is None:
        raise ModelConfigError(
            f"MODEL_PROVIDER={settings.model_provider!r} is not one of {', '.join(PROVIDERS)}"
        )
    return provider.build(settings)
