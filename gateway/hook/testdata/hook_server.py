#!/usr/bin/env python3
"""A routing hook written with Python's standard library only: an
independent check of callgate's X-Callgate-Signature and hook protocol.

    hook_server.py SECRET PORTFILE

Listens on 127.0.0.1 on a free port, writes the port to PORTFILE, and
answers each signed POST:
  - a bad or missing signature (or a timestamp more than 300 s off): 401
  - a call whose "from" is +15550000486: reject 486
  - otherwise: route to agent "py-agent" with header X-Py-Verified: <call_id>
"""
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = sys.argv[1].encode()
PORTFILE = sys.argv[2]


def verify(header, body):
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    ts, sig = parts.get("t"), parts.get("v1")
    if not ts or not sig or abs(time.time() - int(ts)) > 300:
        return False
    want = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(min(n, 65536))
        if not verify(self.headers.get("X-Callgate-Signature", ""), body):
            self.send_response(401)
            self.end_headers()
            return
        call = json.loads(body)
        if call["from"] == "+15550000486":
            answer = {"action": "reject", "status": 486, "reason": "Busy (python)"}
        else:
            answer = {"action": "route", "agent_id": "py-agent",
                      "headers": {"X-Py-Verified": call["call_id"]}}
        out = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
