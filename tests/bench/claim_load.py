"""The client loop of the fault-injection scripts (kill9.py, kill9_hub.py): one agent claiming as fast as it can
over a sidecar's socket, reconnecting whenever the sidecar goes away."""

import json
import socket
import time


def claim_until(stop, sock_path, session, worktree, on_reply):
    """Claims paths of its own and, every third claim, one of 11 shared ones (`pool/N`), until `stop` is set.
    Each answer goes to `on_reply(scope, reply)`; a lost connection is retried after a short pause."""
    stream, n = None, 0
    while not stop.is_set():
        if stream is None:
            try:
                conn = socket.socket(socket.AF_UNIX)
                conn.connect(sock_path)
                stream = conn.makefile("rwb")
            except OSError:
                time.sleep(0.005)
                continue
        n += 1
        scope = f"pool/{n % 11}" if n % 3 == 0 else f"{session}/f{n}"
        request = {"jsonrpc": "2.0", "id": n, "method": "claim.acquire",
                   "params": {"session": session, "worktree": worktree, "scopes": [scope], "ttl_secs": 86400}}
        try:
            stream.write((json.dumps(request) + "\n").encode())
            stream.flush()
            line = stream.readline()
            if not line:
                raise OSError("closed")
            reply = json.loads(line)
        except (OSError, ValueError):
            stream = None
            continue
        on_reply(scope, reply)
