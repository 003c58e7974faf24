"""The demo's callback receiver: an HTTP server on loopback that logs every request it gets.
Paths under /crm/ answer 200; paths under /broken/ answer 500, like a CRM that is down.
Signed requests are checked, with the secret given as the second argument, by the
standardwebhooks package (an implementation independent of pg_callback's)."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    Webhook = None

SECRET = sys.argv[2] if len(sys.argv) > 2 else None
PRINT = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 500 if self.path.startswith("/broken/") else 200
        summary = ""
        try:
            event = json.loads(body)
            data = event["data"]
            summary = f'{event["type"]} {data.get("status", "")} message={data.get("message_id", "-")}'
        except (ValueError, KeyError, TypeError):
            summary = f"{len(body)} bytes"
        signature = ""
        if "webhook-signature" in self.headers and Webhook and SECRET:
            try:
                Webhook(SECRET).verify(body, {k.lower(): v for k, v in self.headers.items()})
                signature = " signature ok"
            except Exception as e:  # noqa: BLE001 - shown to the reader
                signature = f" signature BAD ({e})"
        with PRINT:
            print(f"receiver: {self.command} {self.path} -> {status}: {summary}{signature}", flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"no")

    do_GET = do_POST


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()
