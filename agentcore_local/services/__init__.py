"""The agent-facing listener: the S3 gate, bedrock-runtime (scripted or OpenAI-backed)."""
