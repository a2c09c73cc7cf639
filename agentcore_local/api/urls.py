"""The route table: AWS's paths for both services (they share one port, their paths do not clash).

Path parameters are named as the model's `locationName`s, so validation.py reads them back into
input members generically. boto3 percent-encodes an ARN into one path segment; Starlette decodes
it before routing, so `{agentRuntimeArn:path}` receives `arn:aws:bedrock-agentcore:...:runtime/ID`.
"""

from __future__ import annotations

from starlette.routing import Route

from . import responses as r

ENDPOINT = "/runtimes/{agentRuntimeId}/runtime-endpoints/{endpointName}/"
AGENT_CARD = ".well-known/agent-card.json"  # A2A's; GetAgentCard fetches the agent's own

routes = [
    # bedrock-agentcore (data plane)
    Route("/runtimes/{agentRuntimeArn:path}/invocations", r.invoke_agent_runtime, methods=["POST"]),
    Route(f"/runtimes/{{agentRuntimeArn:path}}/invocations/{AGENT_CARD}", r.get_agent_card, methods=["GET"]),
    Route("/runtimes/{agentRuntimeArn:path}/stopruntimesession", r.stop_runtime_session, methods=["POST"]),
    Route("/runtimes/{agentRuntimeArn:path}/commands", r.invoke_agent_runtime_command, methods=["POST"]),
    # bedrock-agentcore-control (control plane)
    Route("/runtimes/", r.create_agent_runtime, methods=["PUT"]),
    Route("/runtimes/", r.list_agent_runtimes, methods=["POST"]),
    Route("/runtimes/{agentRuntimeId}/", r.get_agent_runtime, methods=["GET"]),
    Route("/runtimes/{agentRuntimeId}/", r.update_agent_runtime, methods=["PUT"]),
    Route("/runtimes/{agentRuntimeId}/", r.delete_agent_runtime, methods=["DELETE"]),
    Route("/runtimes/{agentRuntimeId}/versions/", r.list_agent_runtime_versions, methods=["POST"]),
    Route("/runtimes/{agentRuntimeId}/runtime-endpoints/", r.create_agent_runtime_endpoint, methods=["PUT"]),
    Route("/runtimes/{agentRuntimeId}/runtime-endpoints/", r.list_agent_runtime_endpoints, methods=["POST"]),
    Route(ENDPOINT, r.get_agent_runtime_endpoint, methods=["GET"]),
    Route(ENDPOINT, r.update_agent_runtime_endpoint, methods=["PUT"]),
    Route(ENDPOINT, r.delete_agent_runtime_endpoint, methods=["DELETE"]),
    Route("/tags/{resourceArn:path}", r.tag_resource, methods=["POST"]),
    Route("/tags/{resourceArn:path}", r.untag_resource, methods=["DELETE"]),
    Route("/tags/{resourceArn:path}", r.list_tags_for_resource, methods=["GET"]),
    # local only
    Route("/_local/health", r.local_health, methods=["GET"]),
    Route("/_local/sessions", r.local_sessions, methods=["GET"]),
]


def operations() -> list:
    """Every emulated AWS operation's model (the model-driven tests walk them)."""
    return [route.endpoint.operation for route in routes if hasattr(route.endpoint, "operation")]
