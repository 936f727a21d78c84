#!/usr/bin/env python3
"""A fake OpenAI Chat Completions API (POST /v1/chat/completions, streamed or not) for driving opencode offline.

usage: fake_chat.py CALLS_JSON LOGFILE PORTFILE
CALLS_JSON is a file holding a JSON list of tool calls ({"name": ..., "arguments": {...}}). A request that
offers tools gets the call whose index is the number of tool results already in its messages; past the end of
the list, or without tools (opencode's first call names the session), it gets the text "DONE". Every request is
logged as one JSON line; the chosen port is written to PORTFILE once the server listens.
"""
import json, sys, time, uuid

from fakehttp import JsonHandler, serve

CALLS = json.load(open(sys.argv[1])); LOG = sys.argv[2]; PORT_FILE = sys.argv[3]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}

class Handler(JsonHandler):
    log_path = LOG
    def do_GET(self):
        self.reply_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
    def do_POST(self):
        body = self.read_json()
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
            return self.reply_json(200, {"id": call_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                                    "choices": [{"index": 0, "message": delta, "finish_reason": finish}], "usage": USAGE})
        self.start_events()
        for choice_delta, reason, usage in ((delta, None, None), ({}, finish, USAGE)):
            chunk = {"id": call_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": choice_delta, "finish_reason": reason}]}
            if usage:
                chunk["usage"] = usage
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode()); self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n"); self.wfile.flush()

serve(Handler, PORT_FILE)
