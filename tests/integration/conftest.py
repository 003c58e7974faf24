"""Fixtures for the integration tests: a real PostgreSQL 15 cluster with pg_callback preloaded
(its launcher and workers running), and a real HTTP receiver on loopback that each test
controls: status codes, delays, dropped connections, headers such as Retry-After.

Retry schedules run with pg_callback.time_scale = 0.001, so five minutes take 0.3 s.
"""

import datetime
import email
import hmac
import http.client
import json
import os
import pathlib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import psycopg
from psycopg import sql
import pytest
import trustme

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_DIR = os.environ.get("PG_CALLBACK_IT_DIR", "/tmp/pg_callback_it")
PORT = int(os.environ.get("PG_CALLBACK_IT_PORT", "55434"))
DATABASE = "callbacks"
SETTINGS = [
    "shared_preload_libraries = 'pg_callback'",
    f"pg_callback.database = '{DATABASE}'",
    "pg_callback.time_scale = 0.001",
    "pg_callback.workers = 2",
    "pg_callback.idle_exit = '1s'",
    "max_worker_processes = 16",
    "log_min_messages = warning",
    # The receivers run on loopback, which the SSRF guard refuses by default.
    "pg_callback.allowed_destinations = '127.0.0.1'",
]


def shell(script):
    subprocess.run(["bash", "-c", f"source {ROOT}/scripts/cluster.sh; {script}"], check=True)


class Cluster:
    def __init__(self):
        self.dir = CLUSTER_DIR
        self.port = PORT

    def start(self):
        settings = " ".join(f'"{s}"' for s in SETTINGS)
        shell(f"cluster_start {self.dir} {self.port} {settings}")

    def stop(self, mode="fast"):
        shell(f"as_postgres $PG_BIN/pg_ctl -D {self.dir}/data -m {mode} -w stop")

    def restart_after_crash(self):
        shell(f"as_postgres $PG_BIN/pg_ctl -D {self.dir}/data -l {self.dir}/postgres.log -w start")

    def restart(self):
        self.stop()
        self.restart_after_crash()

    def connect(self, dbname=DATABASE, autocommit=True):
        return psycopg.connect(host=self.dir, port=self.port, user="postgres", dbname=dbname, autocommit=autocommit)

    def sql(self, query, params=None, dbname=DATABASE):
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def one(self, query, params=None):
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def wait_for(self, query, params=None, timeout=10.0, what=None):
        """Polls a query until its single value is truthy; returns that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.one(query, params)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or query}")
            time.sleep(0.05)

    def log(self):
        return pathlib.Path(self.dir, "postgres.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def cluster():
    c = Cluster()
    c.start()
    c.sql("CREATE DATABASE callbacks", dbname="postgres")
    yield c
    shell(f"cluster_stop {c.dir}")


@pytest.fixture
def db(cluster):
    """A fresh pg_callback in the workers' database, with an account and a list."""
    cluster.sql("DROP EXTENSION IF EXISTS pg_callback CASCADE")
    cluster.sql("CREATE EXTENSION pg_callback")
    cluster.sql("INSERT INTO callback.accounts (name) VALUES ('acme')")
    return cluster


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float
    # The status the receiver answered with; None when it dropped the connection.
    answer: int | None = None
    # Over TLS, the names in the client certificate presented (subjectAltName values).
    client: tuple = ()

    def json(self):
        return json.loads(self.body)


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    drop: bool = False
    headers: dict = field(default_factory=dict)
    body: bytes = b"ok"


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print the connections a client gave up on (a
    TLS handshake refused, a connection dropped), with a listen backlog like a web server's:
    socketserver's 5 let the kernel drop the connections a worker opens at once beyond it,
    which the client's TCP then retried a second later, long after the test had moved on."""

    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass


class Receiver:
    """An HTTP server on loopback (HTTPS with `tls`, an ssl.SSLContext holding its
    certificate). respond() queues how the next requests to a path are answered (the last
    behaviour repeats); every request is recorded, and every connection accepted counted."""

    def __init__(self, tls=None):
        self.tls = tls
        self.accepted = 0
        # With tls: how many connections to leave hanging before the handshake, and how long.
        self.stall_handshakes = 0
        self.stall_seconds = 0.0
        # With tls: for each handshake, whether it resumed an earlier session.
        self.resumed = []
        self.requests = []
        self.plans = {}
        self.connections = set()
        self.plan_for_each = None
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                with receiver.lock:
                    receiver.accepted += 1
                if receiver.tls:
                    with receiver.lock:
                        stall = receiver.stall_handshakes > 0
                        receiver.stall_handshakes -= stall
                    if stall:
                        # A handshake that hangs: nothing is answered, then the connection ends.
                        time.sleep(receiver.stall_seconds)
                        raise ConnectionAbortedError("handshake left hanging")
                    # The handshake, here on the connection's thread; a client that refuses
                    # the certificate ends it (handle_error stays quiet about that).
                    self.request = receiver.tls.wrap_socket(self.request, server_side=True)
                    with receiver.lock:
                        receiver.resumed.append(self.request.session_reused)
                super().setup()
                with receiver.lock:
                    receiver.connections.add(self.connection)

            def finish(self):
                with receiver.lock:
                    receiver.connections.discard(self.connection)
                super().finish()

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                with receiver.lock:
                    if path not in receiver.plans and receiver.plan_for_each:
                        receiver.plans[path] = list(receiver.plan_for_each)
                    plan = receiver.plans.get(path) or [Behaviour()]
                    behaviour = plan.pop(0) if len(plan) > 1 else plan[0]
                    receiver.requests.append(
                        Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                 time.time(), None if behaviour.drop else behaviour.status, self.client_names()))
                    receiver.lock.notify_all()
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                if behaviour.drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.send_response(behaviour.status)
                for k, v in behaviour.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(behaviour.body)))
                self.end_headers()
                self.wfile.write(behaviour.body)

            def client_names(self):
                peer = self.connection.getpeercert() if receiver.tls else None
                return tuple(value for _, value in (peer or {}).get("subjectAltName", ()))

            do_GET = do_POST = handle_one

        self.handler = Handler
        self.port = 0
        self.up()

    def up(self):
        """Listens (again, on the same port after down())."""
        self.server = QuietServer(("127.0.0.1", self.port), self.handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        """Stops listening and cuts the open connections: connections are refused until up()."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def url(self, path="/hook"):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def respond(self, path, *behaviours):
        with self.lock:
            self.plans[path] = list(behaviours)

    def respond_all(self, *behaviours):
        """How requests to every path not given its own plan are answered: each path in turn
        gets these behaviours (the last repeats)."""
        with self.lock:
            self.plan_for_each = list(behaviours)
            self.plans.clear()

    def received(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r.path.split("?")[0] == path]

    def wait_for(self, count, path=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                got = [r for r in self.requests if path is None or r.path.split("?")[0] == path]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"received {len(got)} requests at {path or 'any path'}, expected {count}")
                self.lock.wait(remaining)

    def close(self):
        self.down()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def ca():
    """A private CA, made at test time, that issues the HTTPS receivers' certificates."""
    return trustme.CA()


def tls_receiver(ca, *identities, clients_of=None, **validity):
    """An HTTPS receiver on 127.0.0.1 with a certificate of `ca` for `identities`; with
    `clients_of` (another CA), it refuses clients without a certificate that CA issued."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities, **validity).configure_cert(context)
    if clients_of:
        context.verify_mode = ssl.CERT_REQUIRED
        clients_of.configure_trust(context)
    return Receiver(tls=context)


class SmtpRelay:
    """An SMTP server on loopback (aiosmtpd) that keeps every message it accepts. With `tls`
    (an ssl.SSLContext) it requires STARTTLS; with `login` (user, password) it requires that
    login, over TLS. up() and down() start and stop it on the same port."""

    def __init__(self, tls=None, login=None, port=None):
        from aiosmtpd.smtp import AuthResult

        self.tls, self.login = tls, login
        self.messages = []
        self.lock = threading.Condition()
        self.port = port or free_port()
        self.controller = None
        relay = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with relay.lock:
                    relay.messages.append(email.message_from_bytes(envelope.content))
                    relay.lock.notify_all()
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login.decode(), auth_data.password.decode()) == tuple(relay.login or ())
            return AuthResult(success=ok)

        self.handler, self.authenticate = Handler(), authenticate

    def up(self):
        from aiosmtpd.controller import Controller

        options = {}
        if self.tls:
            options.update(tls_context=self.tls, require_starttls=True)
        if self.login:
            options.update(authenticator=self.authenticate, auth_required=True, auth_require_tls=bool(self.tls))
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, server_hostname="127.0.0.1",
                                     **options)
        self.controller.start()
        return self

    def down(self):
        if self.controller:
            self.controller.stop()
            self.controller = None

    def wait_for(self, count, timeout=15.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the relay got {len(self.messages)} emails, expected {count}")
                self.lock.wait(remaining)
            return list(self.messages)


def sigv4_query_signature_valid(method, url, key, secret, now=None):
    """Whether a presigned URL (SigV4, query parameters) carries the signature botocore, an
    implementation independent of pg_callback's (rusty-s3), computes for it with this key
    pair, and has not expired."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)
    if not {"X-Amz-Signature", "X-Amz-Date", "X-Amz-Credential", "X-Amz-Expires"} <= given.keys():
        return False
    signed_at = datetime.datetime.strptime(given["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if (now or datetime.datetime.now(datetime.timezone.utc)) > signed_at + datetime.timedelta(seconds=int(given["X-Amz-Expires"])):
        return False
    region = given["X-Amz-Credential"].split("/")[2]
    signer = S3SigV4QueryAuth(Credentials(key, secret), "s3", region, expires=int(given["X-Amz-Expires"]))
    rest = urlencode([(k, v) for k, v in query if not k.startswith("X-Amz-")])
    request = AWSRequest(method=method, url=urlunsplit((parts.scheme, parts.netloc, parts.path, rest, "")))
    request.context["timestamp"] = given["X-Amz-Date"]
    signer._modify_request_before_signing(request)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return hmac.compare_digest(expected, given["X-Amz-Signature"])


class ObjectStorage:
    """An S3-compatible server on loopback holding the bucket `reports`: s3rver (from npm:
    tests/run.sh installs it) keeps the objects, behind a gate that lets a request through only
    when its SigV4 query signature (presigned, as pg_callback sends all of them) is valid for
    the one key pair, S3RVER / S3RVER, by botocore's reckoning; s3rver itself checks only the
    older signatures. up() and down() start and stop both on the same port."""

    BIN = ROOT / ".cache/node/node_modules/.bin/s3rver"
    KEY = "S3RVER"

    def __init__(self, port=None):
        self.port = port or free_port()
        self.inner = free_port()
        self.dir = tempfile.mkdtemp(prefix="pg_callback_s3_")
        self.process = None
        self.gate = None
        self.requests = []
        # Seconds to hold the answer to each PUT after the object is stored.
        self.hold = 0.0
        storage = self

        class Gate(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = f"http://127.0.0.1:{storage.port}{self.path}"
                valid = sigv4_query_signature_valid(self.command, url, storage.KEY, storage.KEY)
                storage.requests.append((self.command, self.path.split("?")[0], valid))
                if not valid:
                    answer = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                inner = http.client.HTTPConnection("127.0.0.1", storage.inner, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-length")}
                inner.request(self.command, self.path, body=body, headers=headers)
                response = inner.getresponse()
                answer = response.read()
                if self.command == "PUT" and storage.hold:
                    time.sleep(storage.hold)
                self.send_response(response.status)
                for name in ("ETag", "Content-Type"):
                    if response.getheader(name):
                        self.send_header(name, response.getheader(name))
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                inner.close()

            do_GET = do_PUT = do_POST = do_DELETE = relay

        self.handler = Gate

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def up(self):
        self.process = subprocess.Popen([str(self.BIN), "-d", self.dir, "-a", "127.0.0.1", "-p", str(self.inner),
                                         "--configure-bucket", "reports", "--silent"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.inner), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("s3rver did not start")
                time.sleep(0.1)
        self.gate = QuietServer(("127.0.0.1", self.port), self.handler)
        self.gate.daemon_threads = True
        threading.Thread(target=self.gate.serve_forever, daemon=True).start()
        return self

    def down(self):
        if self.gate:
            self.gate.shutdown()
            self.gate.server_close()
            self.gate = None
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def settings(self, secret=None):
        """The pg_callback settings that send reports here."""
        return dict(report_bucket="reports", report_endpoint=self.url, report_region="us-east-1",
                    report_access_key_id=self.KEY, report_secret_access_key=secret or self.KEY)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(cluster):
    """Sets pg_callback settings (ALTER SYSTEM, reload) for one test: set(name=value, ...),
    waiting until a new session sees them; all reset after."""
    changed = []

    def set_to(**values):
        for name, value in values.items():
            setting = f"pg_callback.{name}"
            cluster.sql(f"ALTER SYSTEM SET {setting} = %s" % sql.quote(str(value)), dbname="postgres")
            changed.append(setting)
        cluster.sql("SELECT pg_reload_conf()", dbname="postgres")
        for name, value in values.items():
            if not name.endswith(("password", "secret_access_key")):
                cluster.wait_for(f"SELECT current_setting('pg_callback.{name}') = %s", [str(value)])

    yield set_to
    for setting in set(changed):
        cluster.sql(f"ALTER SYSTEM RESET {setting}", dbname="postgres")
    cluster.sql("SELECT pg_reload_conf()", dbname="postgres")
    time.sleep(0.2)


@pytest.fixture
def one_worker(cluster):
    """The cluster restarted with one delivery worker (pg_callback.workers is read at start),
    for what one worker's process keeps, such as its TLS sessions; two again after."""
    cluster.sql("ALTER SYSTEM SET pg_callback.workers = 1", dbname="postgres")
    cluster.restart()
    yield
    cluster.sql("ALTER SYSTEM RESET pg_callback.workers", dbname="postgres")
    cluster.restart()


@pytest.fixture
def bundle(cluster, ca):
    """Sets pg_callback.ca_bundle to a file holding `ca` (ALTER SYSTEM, reload); reset after."""
    directory = tempfile.mkdtemp(prefix="pg_callback_ca_")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "ca.pem")
    ca.cert_pem.write_to_path(path)
    os.chmod(path, 0o644)

    def set_to(value):
        cluster.sql("ALTER SYSTEM SET pg_callback.ca_bundle = %s" % sql.quote(value), dbname="postgres")
        cluster.sql("SELECT pg_reload_conf()", dbname="postgres")
        cluster.wait_for("SELECT current_setting('pg_callback.ca_bundle') = %s", [value])

    yield lambda: set_to(path)
    cluster.sql("ALTER SYSTEM RESET pg_callback.ca_bundle", dbname="postgres")
    cluster.sql("SELECT pg_reload_conf()", dbname="postgres")
    cluster.wait_for("SELECT current_setting('pg_callback.ca_bundle') = ''")
