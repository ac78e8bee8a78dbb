#!/usr/bin/env python3
"""An agent's messaging URL in Python's standard library that checks
callgate's X-Callgate-Signature on its own (the README's recipe):

    X-Callgate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>

The secret comes from $CALLGATE_WEBHOOK_SECRET. It listens on 127.0.0.1 on
a free port, prints "listening <port>", then one JSON line per request:
{"ok": bool, "t": int, "reason": str, "body": str}. It answers 204 to a
valid signature and 401 otherwise. Stop it with SIGTERM."""

import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["CALLGATE_WEBHOOK_SECRET"].encode()
MAX_BODY = 1 << 20


def verify(header, body):
    """Returns (ok, t, reason)."""
    t, sigs = None, []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            t = value
        elif key == "v1":
            sigs.append(value)
    if t is None or not t.isdigit() or not sigs:
        return False, None, "malformed header"
    expected = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        return False, int(t), "mismatch"
    return True, int(t), ""


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        if n < 0 or n > MAX_BODY:
            self.send_response(413)
            self.end_headers()
            return
        body = self.rfile.read(n)
        ok, t, reason = verify(self.headers.get("X-Callgate-Signature"), body)
        print(json.dumps({"ok": ok, "t": t, "reason": reason, "body": body.decode("utf-8", "replace")}), flush=True)
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    srv = HTTPServer(("127.0.0.1", 0), Handler)
    srv.timeout = 5
    print("listening", srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
