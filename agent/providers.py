"""MODEL_PROVIDER -> a Strands Model. Optional providers are imported only when chosen."""

from __future__ import annotations

from strands.models.model import Model

from agent.settings import Settings

PROVIDERS = ("bedrock", "scripted", "openai", "ollama")


class ModelConfigError(RuntimeError):
    """The chosen provider cannot be built: a missing package, credential or setting."""


def build_model(settings: Settings) -> Model:
    """The model for `settings.model_provider`, or ModelConfigError with one line saying what to fix."""
    provider = settings.model_provider
    if provider == "scripted":
        from agent.scripted import ScriptedModel

        return ScriptedModel(settings.scripted_plan, settings.workspace)
    if provider == "bedrock":
        import boto3
        from strands.models.bedrock import BedrockModel

        session = boto3.Session(region_name=settings.region)
        if session.get_credentials() is None:
            raise ModelConfigError(
                "MODEL_PROVIDER=bedrock found no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID, "
                "or run offline with MODEL_PROVIDER=scripted"
            )
        return BedrockModel(model_id=settings.model_id, boto_session=session)
    if provider == "openai":
        if not settings.openai_base_url:
            raise ModelConfigError(
                "MODEL_PROVIDER=openai needs OPENAI_BASE_URL (an OpenAI-compatible endpoint)"
            )
        try:
            from strands.models.openai import OpenAIModel
        except ImportError as e:
            raise ModelConfigError("MODEL_PROVIDER=openai needs: pip install 'strands-agents[openai]'") from e
        client_args = {"base_url": settings.openai_base_url, "api_key": settings.openai_api_key}
        return OpenAIModel(client_args=client_args, model_id=settings.model_id)
    if provider == "ollama":
        try:
            from strands.models.ollama import OllamaModel
        except ImportError as e:
            raise ModelConfigError("MODEL_PROVIDER=ollama needs: pip install 'strands-agents[ollama]'") from e
        return OllamaModel(host=settings.ollama_host, model_id=settings.model_id)
    raise ModelConfigError(f"MODEL_PROVIDER={provider!r} is not one of {', '.join(PROVIDERS)}")
