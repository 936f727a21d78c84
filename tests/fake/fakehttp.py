"""What the fake OpenAI-style servers share (fake_responses.py for Codex, fake_chat.py for opencode): a
request handler that reads and answers JSON and logs each request as one line, and a start on an ephemeral
loopback port that writes the port to a file once it listens."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = None  # set by the server script: where each request is logged

    def log_message(self, *args):
        pass

    def reply_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        """The request's JSON body (an unreadable one as {"_raw": ...}), logged with its path."""
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw[:500].decode("utf-8", "replace")}
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"path": self.path, "body": body}) + "\n")
        return body

    def start_events(self):
        """Starts a server-sent event stream; the connection closes after it."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True


def serve(handler, port_file):
    """Serves `handler` on 127.0.0.1 and an ephemeral port, written to `port_file` once it listens."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()
