#!/usr/bin/env python3
"""A fake OpenAI Chat Completions API (POST /v1/chat/completions, streamed or not) for driving opencode offline.

usage: fake_chat.py CALLS_JSON LOGFILE PORTFILE
CALLS_JSON is a file holding a JSON list of tool calls ({"name": ..., "arguments": {...}}). A request that
offers tools gets the call whose index is the number of tool results already in its messages; past the end of
the list, or without tools (opencode's first call names the session), it gets the text "DONE". Every request is
logged as one JSON line; the chosen port is written to PORTFILE once the server listens.
"""
import json, os, sys, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CALLS = json.load(open(sys.argv[1])); LOG = sys.argv[2]; PORT_FILE = sys.argv[3]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}

def log(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def _json(self, code, body):
        data = json.dumps(body).encode(); self.send_response(code)
        self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(data)))
        self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw[:500].decode("utf-8", "replace")}
        log({"path": self.path, "body": body})
        step = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
        call_id = "chatcmpl-" + uuid.uuid4().hex[:10]; model = body.get("model", "fake-model")
        if body.get("tools") and step < len(CALLS):
            call = CALLS[step]
            delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "call_" + uuid.uuid4().hex[:8],
                     "type": "function", "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]}
            finish = "tool_calls"
        else:
            delta = {"role": "assistant", "content": "DONE"}; finish = "stop"
        if not body.get("stream"):
            return self._json(200, {"id": call_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                                    "choices": [{"index": 0, "message": delta, "finish_reason": finish}], "usage": USAGE})
        self.send_response(200); self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache"); self.send_header("connection", "close"); self.end_headers()
        for choice_delta, reason, usage in ((delta, None, None), ({}, finish, USAGE)):
            chunk = {"id": call_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": choice_delta, "finish_reason": reason}]}
            if usage:
                chunk["usage"] = usage
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode()); self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n"); self.wfile.flush(); self.close_connection = True

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
