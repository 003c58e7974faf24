#!/usr/bin/env bash
# The pg_callback demo: installs what is missing, builds and installs the extension into a
# throwaway PostgreSQL 15 cluster with the library preloaded (launcher and workers running),
# starts a local receiver and SMTP relay, and runs demo/demo.sql, echoing each statement; then
# shows what the receiver and the relay got. Traffic stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-tools.sh
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore standardwebhooks trustme aiosmtpd
source scripts/cluster.sh

echo "== building and installing pg_callback"
cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null

dir=${PG_CALLBACK_DEMO_DIR:-/tmp/pg_callback_demo}
port=${PG_CALLBACK_DEMO_PORT:-55433}
receiver_port=${PG_CALLBACK_DEMO_RECEIVER_PORT:-58080}
mailer_port=${PG_CALLBACK_DEMO_MAILER_PORT:-58025}
secret=whsec_ZGVtby1zZWNyZXQtb2YtdGhpcnR5LXR3by1ieXRlcw==   # a demo secret, known to the receiver

# The receiver speaks HTTPS with a certificate from a CA of its own, made now; the workers
# trust that CA through pg_callback.ca_bundle.
ca_file=/tmp/pg_callback_demo_ca.pem
rm -f "$ca_file"
python3 demo/receiver.py "$receiver_port" "$secret" "$ca_file" > "/tmp/pg_callback_demo_receiver.log" 2>&1 &
receiver_pid=$!
# The SMTP relay alert emails go through.
python3 demo/mailer.py "$mailer_port" > "/tmp/pg_callback_demo_mailer.log" 2>&1 &
mailer_pid=$!
for _ in $(seq 50); do [ -s "$ca_file" ] && break; sleep 0.1; done
trap 'kill $receiver_pid $mailer_pid 2>/dev/null; cluster_stop "$dir"' EXIT

# 5 minutes between the strict policy's attempts become 3 seconds; the receiver is on
# loopback, which pg_callback refuses unless allowed; alert emails go to the demo's relay (on
# loopback, so without TLS).
cluster_start "$dir" "$port" \
    "shared_preload_libraries = 'pg_callback'" \
    "pg_callback.database = 'postgres'" \
    "pg_callback.time_scale = 0.01" \
    "pg_callback.allowed_destinations = '127.0.0.1'" \
    "pg_callback.ca_bundle = '$ca_file'" \
    "pg_callback.smtp_host = '127.0.0.1'" \
    "pg_callback.smtp_port = $mailer_port" \
    "pg_callback.smtp_security = 'off'" \
    "pg_callback.smtp_from = 'callbacks@platform.example'"
cluster_psql "$dir" "$port" -c "CREATE EXTENSION pg_callback"
cluster_psql "$dir" "$port" -e -f demo/demo.sql \
    -v receiver="https://127.0.0.1:$receiver_port" -v secret="$secret"

echo
echo "== What the receiver got"
cat /tmp/pg_callback_demo_receiver.log
echo
echo "== What the SMTP relay got: the alert email"
cat /tmp/pg_callback_demo_mailer.log
