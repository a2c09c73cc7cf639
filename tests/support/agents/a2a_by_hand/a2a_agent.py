"""The smallest A2A server, written by hand from the protocol (a2a-sdk is not in this project's
lock): JSON-RPC 2.0 on POST / at port 9000, as AgentCore's A2A contract has it, and the agent
card at GET /.well-known/agent-card.json. It answers A2A 0.3's `message/send` with a Message;
every other method gets JSON-RPC's -32601. Standard library only, so its code zip is this file.

It keeps every text it was sent in a file on the session's storage (/mnt/workspace), and counts
in memory what this process saw of each contextId: a stop loses the count, never the notes."""

import json
import os
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOTES = "/mnt/workspace/a2a-notes.txt"
CARD = {
    "name": "notes",
    "description": "Remembers what it is told, on the session's storage.",
    "url": "http://127.0.0.1:9000/",
    "version": "1.0.0",
    "protocolVersion": "0.3.0",
    "preferredTransport": "JSONRPC",
    "capabilities": {"streaming": False},
    "defaultInputModes": ["text/plain"],
    "defaultOutputModes": ["text/plain"],
    "skills": [{"id": "remember", "name": "remember", "description": "keeps notes", "tags": ["notes"]}],
}
seen: dict[str, int] = {}


def error(request_id, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def handle(request) -> dict:
    if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or "method" not in request:
        return error(request.get("id") if isinstance(request, dict) else None, -32600, "Invalid Request")
    if request["method"] != "message/send":
        return error(request.get("id"), -32601, f"Method not found: {request['method']}")
    message = (request.get("params") or {}).get("message") or {}
    parts = message.get("parts") if isinstance(message, dict) else None
    if not isinstance(parts, list):
        return error(request.get("id"), -32602, "Invalid params: params.message.parts")
    text = " ".join(p["text"] for p in parts if isinstance(p, dict) and p.get("kind") == "text")
    context = message.get("contextId") or str(uuid.uuid4())
    with open(NOTES, "a") as notes:
        notes.write(text + "\n")
    with open(NOTES) as notes:
        remembered = notes.read().splitlines()
    seen[context] = seen.get(context, 0) + 1
    reply = {
        "kind": "message",
        "role": "agent",
        "messageId": str(uuid.uuid4()),
        "contextId": context,
        "parts": [{"kind": "text", "text": "remembered: " + ", ".join(remembered)}],
        "metadata": {"seen_by_this_process": seen[context]},
    }
    return {"jsonrpc": "2.0", "id": request.get("id"), "result": reply}


class Handler(BaseHTTPRequestHandler):
    def send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/.well-known/agent-card.json":
            self.send_json(200, CARD)
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            request = json.loads(body)
        except ValueError:
            self.send_json(200, error(None, -32700, "Parse error"))
            return
        self.send_json(200, handle(request))


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "9000"))), Handler).serve_forever()
