#!/usr/bin/env python3
"""A scripted stand-in for the Anthropic Messages API, for driving the real `claude` CLI offline in tests.

Usage: fake_anthropic.py SCRIPT.json LOG.jsonl PORTFILE

The script is {"conversations": [{"match": TEXT, "steps": [STEP, ...]}, ...]}. A request belongs to the first
conversation whose `match` occurs in the text of its first user message; its step is the number of assistant
messages already in it, so parallel sessions and subagents each follow their own script without shared state.
A STEP is {"tools": [{"name": ..., "input": {...}}, ...]} (one assistant message with those tool calls) or
{"text": ...} (the final answer). A step may also hold:
  "wait_for_file": PATH        answer only once PATH exists (the test opens the gate)
  "after": [MATCH, N]          answer only once a request of conversation MATCH with N assistant messages was seen
String values in tool inputs may use {cwd}: the working directory named in the request's system prompt.
Requests without tools, or past the end of their script, get a short text answer. Every request is appended to
LOG as one JSON line. The server binds an ephemeral port on 127.0.0.1 and writes it to PORTFILE.
"""
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = json.load(open(sys.argv[1]))
LOG_PATH = sys.argv[2]
PORT_FILE = sys.argv[3]
LOG_LOCK = threading.Lock()
SEEN = threading.Condition()
SEEN_STEPS = {}  # conversation match -> highest step seen
WAIT_LIMIT_SECONDS = 60


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return ""


def first_user_text(body):
    for message in body.get("messages", []):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def working_directory(body):
    system = body.get("system")
    text = system if isinstance(system, str) else text_of(system)
    text += "\n" + "\n".join(text_of(m.get("content")) for m in body.get("messages", []))
    found = re.search(r"(?:Primary working directory|Working directory|cwd):\s*(/[^\s<]+)", text)
    return found.group(1) if found else ""


def substitute(value, cwd):
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, list):
        return [substitute(v, cwd) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, cwd) for k, v in value.items()}
    return value


def wait_until(predicate):
    deadline = time.time() + WAIT_LIMIT_SECONDS
    with SEEN:
        while not predicate() and time.time() < deadline:
            SEEN.wait(0.05)


def locate(body):
    """The conversation and step number of a request, or None for a request outside the script."""
    if not body.get("tools"):
        return None
    first = first_user_text(body)
    step_number = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
    for conversation in SCRIPT.get("conversations", []):
        if conversation["match"] in first:
            return conversation, step_number
    return None


def plan(body, located):
    """The blocks and stop reason of the answer, once the step's gates (if any) open."""
    if located is None:
        return [{"type": "text", "text": "ok" if not body.get("tools") else "DONE"}], "end_turn"
    conversation, step_number = located
    with SEEN:
        key = conversation["match"]
        SEEN_STEPS[key] = max(SEEN_STEPS.get(key, -1), step_number)
        SEEN.notify_all()
    steps = conversation["steps"]
    if step_number >= len(steps):
        return [{"type": "text", "text": "DONE"}], "end_turn"
    step = steps[step_number]
    if "wait_for_file" in step:
        wait_until(lambda: os.path.exists(step["wait_for_file"]))
    if "after" in step:
        other, needed = step["after"]
        wait_until(lambda: SEEN_STEPS.get(other, -1) >= needed)
    if "text" in step:
        return [{"type": "text", "text": step["text"]}], "end_turn"
    cwd = working_directory(body)
    blocks = [{"type": "text", "text": "Working on it."}]
    for tool in step["tools"]:
        blocks.append({"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": tool["name"],
                       "input": substitute(tool["input"], cwd)})
    return blocks, "tool_use"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/v1/models"):
            return self.reply_json(200, {"data": [], "has_more": False, "first_id": None, "last_id": None})
        self.reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake"}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            return self.reply_json(200, {"input_tokens": 42})
        if not path.endswith("/v1/messages"):
            return self.reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake"}})
        located = locate(body)
        step = (located[0]["match"], located[1]) if located else None
        # Logged before any gate is waited on, so a test sees the request while its answer is held back.
        with LOG_LOCK, open(LOG_PATH, "a") as log:
            log.write(json.dumps({"session": self.headers.get("X-Claude-Code-Session-Id"), "step": step,
                                  "cwd": working_directory(body), "body": body}) + "\n")
        blocks, stop = plan(body, located)
        self.stream(body, blocks, stop)

    def stream(self, body, blocks, stop):
        model = body.get("model", "claude-fake")
        message_id = "msg_" + uuid.uuid4().hex[:24]
        usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not body.get("stream"):
            return self.reply_json(200, {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                         "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()

        def event(name, data):
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        event("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": dict(usage, output_tokens=1)}})
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "text", "text": ""}})
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": block["text"]}})
            else:
                event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
                event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": 5}})
        event("message_stop", {"type": "message_stop"})
        self.close_connection = True


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(PORT_FILE + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(PORT_FILE + ".tmp", PORT_FILE)
    server.serve_forever()
