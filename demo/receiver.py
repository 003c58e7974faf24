"""The demo's callback receiver: an HTTPS server on loopback that logs every request it gets.
Its certificate comes from a private CA made at start (trustme), whose certificate it writes
to the path given as the third argument, for pg_callback.ca_bundle: like a CRM behind a
company's own CA. Paths under /crm/ answer 200; paths under /broken/ answer 500, like a CRM
that is down. Signed requests are checked, with the secret given as the second argument, by
the standardwebhooks package (an implementation independent of pg_callback's).

    python3 demo/receiver.py PORT SECRET CA_FILE"""

import json
import os
import ssl
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


def tls_context(ca_file):
    """A server context with a certificate for 127.0.0.1 from a new CA, written to ca_file."""
    import trustme

    ca = trustme.CA(organization_name="pg_callback demo CRM")
    ca.cert_pem.write_to_path(ca_file)
    os.chmod(ca_file, 0o644)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.socket = tls_context(sys.argv[3]).wrap_socket(server.socket, server_side=True)
    print(f"receiver: listening on https://127.0.0.1:{sys.argv[1]}, its CA in {sys.argv[3]}", flush=True)
    server.serve_forever()
