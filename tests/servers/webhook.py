#!/usr/bin/env python3
"""An HTTP receiver for Ferry's alert webhook, for the tests.

Verifies each request's X-Ferry-Signature (HMAC-SHA256 of the body) and
appends one JSON line per request to --record. With --fail-first N it
answers 503 to the first N requests, like a receiver that is down.
"""
import argparse
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--secret", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    a = p.parse_args()
    lock = threading.Lock()
    state = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            expected = "sha256=" + hmac.new(a.secret.encode(), body, hashlib.sha256).hexdigest()
            with lock:
                state["requests"] += 1
                failing = state["requests"] <= a.fail_first
                event = {
                    "idempotency_key": self.headers.get("Idempotency-Key"),
                    "signature_ok": hmac.compare_digest(expected, self.headers.get("X-Ferry-Signature", "")),
                    "status": 503 if failing else 200,
                    "alert": json.loads(body or b"null"),
                }
                with open(a.record, "a") as f:
                    f.write(json.dumps(event) + "\n")
            self.send_response(event["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("ready %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
