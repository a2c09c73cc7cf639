"""First call of a new session: this project's coding agent against code-zip agents (serve --agent),
each from a cold bwrap sandbox (no warm pool), through boto3 against agentcore_local.

Run: python -m bench.artifacts [REPEATS]   (prints one JSON object)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.runtime import LocalRuntime, new_session

# Two stand-ins with no dependencies: a code zip's first call is the sandbox plus the agent's own
# import, so these show the platform's share; a real agent adds its imports (the SDK's ~1 s).
AGENTS = {
    "python_stdlib": (
        "main.py",
        "import json\nfrom http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "class A(BaseHTTPRequestHandler):\n"
        "    def answer(self, body):\n"
        "        data = json.dumps(body).encode()\n"
        "        self.send_response(200); self.send_header('content-type', 'application/json')\n"
        "        self.send_header('content-length', str(len(data))); self.end_headers()\n"
        "        self.wfile.write(data)\n"
        "    def do_GET(self): self.answer({'status': 'Healthy'})\n"
        "    def do_POST(self):\n"
        "        self.rfile.read(int(self.headers.get('content-length') or 0)); self.answer({'ok': True})\n"
        "ThreadingHTTPServer(('0.0.0.0', 8080), A).serve_forever()\n",
    ),
    "node": (
        "index.js",
        "require('http').createServer((q, s) => { s.writeHead(200, {'content-type': 'application/json'});"
        " s.end(q.method === 'GET' ? '{\"status\":\"Healthy\"}' : '{\"ok\":true}'); }).listen(8080);\n",
    ),
}


def own_agent_arn(rt: LocalRuntime, name: str) -> str:
    """The runtime serve --agent registered (named for its directory)."""
    import boto3

    keys = {"aws_access_key_id": "agentcore-local", "aws_secret_access_key": "agentcore-local"}
    control = boto3.client("bedrock-agentcore-control", endpoint_url=rt.url, region_name="us-west-2", **keys)
    runtimes = control.list_agent_runtimes()["agentRuntimes"]
    return next(r["agentRuntimeArn"] for r in runtimes if r["agentRuntimeName"] == name)


def first_calls(rt: LocalRuntime, arn: str, repeats: int) -> list[float]:
    client, seconds = rt.client(), []
    for _ in range(repeats):
        session = new_session("artifact")
        started = time.perf_counter()
        answer = client.invoke_agent_runtime(
            agentRuntimeArn=arn, runtimeSessionId=session, payload=b'{"prompt": "hello"}'
        )
        answer["response"].read()
        seconds.append(time.perf_counter() - started)
        client.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
    return seconds


def main(repeats: int = 5) -> dict:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (entry, source) in [("coding_agent", ("", "")), *AGENTS.items()]:
            state = Path(tmp, name)
            extra: tuple[str, ...] = ()
            if entry:
                Path(tmp, f"{name}-src").mkdir()
                Path(tmp, f"{name}-src", entry).write_text(source)
                extra = ("--agent", str(Path(tmp, f"{name}-src")))
            rt = LocalRuntime(state, pool=0, extra=extra)
            try:
                arn = rt.arn if not entry else own_agent_arn(rt, f"{name}_src")
                seconds = first_calls(rt, arn, repeats)
            finally:
                rt.close()
            results[name] = {"repeats": repeats, "first_call_median_s": round(statistics.median(seconds), 3)}
    return results


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
