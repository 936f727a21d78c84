#!/usr/bin/env python3
"""A fake OpenAI Responses API (POST /v1/responses, server-sent events) for driving the real Codex CLI offline.

usage: fake_responses.py ITEMS_JSON LOGFILE PORTFILE
ITEMS_JSON is a file holding a JSON list of output items: each model call that carries no tool output yet gets
the next item (a function call); a call that carries one gets a final "DONE" message. Every request is logged as
one JSON line; the chosen port is written to PORTFILE once the server listens.
"""
import json, sys, uuid

from fakehttp import JsonHandler, serve

ITEMS = json.load(open(sys.argv[1])); LOG = sys.argv[2]; PORT_FILE = sys.argv[3]
served = []

class Handler(JsonHandler):
    log_path = LOG
    def do_GET(self):
        if "/models" in self.path:
            return self.reply_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}], "models": []})
        self.reply_json(404, {"error": {"message": "fake"}})
    def do_POST(self):
        body = self.read_json()
        inputs = body.get("input", [])
        answered = any(isinstance(x, dict) and x.get("type") in ("function_call_output", "custom_tool_call_output") for x in inputs)
        if answered or len(served) >= len(ITEMS):
            item = {"type": "message", "role": "assistant", "id": "msg_" + uuid.uuid4().hex[:8],
                    "content": [{"type": "output_text", "text": "DONE"}]}
        else:
            item = dict(ITEMS[len(served)]); served.append(item)
            item.setdefault("id", "fc_" + uuid.uuid4().hex[:8])
        response_id = "resp_" + uuid.uuid4().hex[:12]
        self.start_events()
        def event(name, data):
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()); self.wfile.flush()
        event("response.created", {"type": "response.created", "response": {"id": response_id}})
        event("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item})
        event("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item})
        usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
        event("response.completed", {"type": "response.completed", "response": {"id": response_id, "usage": usage}})

serve(Handler, PORT_FILE)
