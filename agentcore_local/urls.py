"""The route table: AWS's paths for both services (they share one port, their paths do not clash).

boto3 percent-encodes the runtime ARN into one path segment; Starlette decodes it before routing,
so `{arn:path}` receives `arn:aws:bedrock-agentcore:REGION:ACCOUNT:runtime/ID`.
"""

from __future__ import annotations

from starlette.routing import Route

from . import responses

routes = [
    # bedrock-agentcore (data plane)
    Route("/runtimes/{arn:path}/invocations", responses.invoke_agent_runtime, methods=["POST"]),
    Route("/runtimes/{arn:path}/stopruntimesession", responses.stop_runtime_session, methods=["POST"]),
    Route("/runtimes/{arn:path}/commands", responses.invoke_agent_runtime_command, methods=["POST"]),
    # bedrock-agentcore-control (control plane)
    Route("/runtimes/", responses.create_agent_runtime, methods=["PUT"]),
    Route("/runtimes/", responses.list_agent_runtimes, methods=["POST"]),
    Route("/runtimes/{runtime_id}/", responses.get_agent_runtime, methods=["GET"]),
    Route("/runtimes/{runtime_id}/", responses.update_agent_runtime, methods=["PUT"]),
    Route("/runtimes/{runtime_id}/", responses.delete_agent_runtime, methods=["DELETE"]),
    Route("/runtimes/{runtime_id}/versions/", responses.list_agent_runtime_versions, methods=["POST"]),
    # local only
    Route("/_local/health", responses.local_health, methods=["GET"]),
    Route("/_local/sessions", responses.local_sessions, methods=["GET"]),
]
