"""The agent-facing listener: the S3 gate, bedrock-runtime (scripted or OpenAI-backed)."""

from .listener import backend_from_spec, start_agent_services

__all__ = ["backend_from_spec", "start_agent_services"]
