"""agentcore_local: AgentCore Runtime with Session Storage on one machine, for laptops and CI.

`python -m agentcore_local serve` answers the bedrock-agentcore data plane and the
bedrock-agentcore-control runtime operations at AWS's paths, so boto3 reaches it through
AWS_ENDPOINT_URL_BEDROCK_AGENTCORE(_CONTROL). See docs/local-runtime.md.
"""
