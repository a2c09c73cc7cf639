"""The agent-facing listener: the S3 gate, bedrock-runtime (scripted or OpenAI-backed)."""

from .forwarder import Forwarder
from .listener import backend_from_spec, start_agent_services

__all__ = ["Forwarder", "backend_from_spec", "start_agent_services"]
