#!/usr/bin/env bash
# pg_callback's benchmark (BENCHMARKS.md): installs what is missing (nginx, wrk, pgbench),
# builds the extension in release mode, starts its own cluster with the worker and a local
# nginx receiver, runs every measurement of bench/bench.py and prints a table, then stops
# everything, twice: with durable settings, then fast ones. Traffic goes to loopback only.
# Arguments are passed to bench.py (e.g. --only drain latency).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-tools.sh nginx-light wrk
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "psycopg[binary]"
source scripts/cluster.sh

echo "== building and installing pg_callback (release)"
cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null

dir=${PG_CALLBACK_BENCH_DIR:-/tmp/pg_callback_bench}
port=${PG_CALLBACK_BENCH_PORT:-55435}
nginx_port=${PG_CALLBACK_BENCH_NGINX_PORT:-58091}
nginx_dir="$dir-nginx"

nginx_tls_port=${PG_CALLBACK_BENCH_NGINX_TLS_PORT:-58093}
s3_port=${PG_CALLBACK_BENCH_S3_PORT:-58094}

rm -rf "$nginx_dir" && mkdir -p "$nginx_dir"
# A CA of the bench's own and a certificate for 127.0.0.1 from it (ECDSA P-256), made now; the
# workers trust the CA through pg_callback.ca_bundle.
(
    cd "$nginx_dir"
    ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=pg_callback bench CA" 2>/dev/null
    openssl req $ec -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
        -extfile server.ext 2>/dev/null
    chmod 644 ca.pem
)
sed -e "s|@DIR@|$nginx_dir|g" -e "s|@PORT@|$nginx_port|g" -e "s|@TLS_PORT@|$nginx_tls_port|g" \
    bench/nginx.conf.in > "$nginx_dir/nginx.conf"
nginx -c "$nginx_dir/nginx.conf"
# The S3-compatible server campaign reports go to (s3rver, from npm), for the report measurement.
bash scripts/ensure-s3rver.sh
rm -rf "$dir-s3" && mkdir -p "$dir-s3"
.cache/node/node_modules/.bin/s3rver -d "$dir-s3" -a 127.0.0.1 -p "$s3_port" --configure-bucket reports --silent &
s3_pid=$!
trap 'kill $s3_pid 2>/dev/null; nginx -c "$nginx_dir/nginx.conf" -s stop 2>/dev/null || true; cluster_stop "$dir"' EXIT

# Durable first: the server's defaults (fsync and synchronous_commit on; cluster_start's own
# fsync = off is overridden by the later line). Then the same measurements with both off,
# labelled "fast". PG_CALLBACK_BENCH_DURABILITY=durable (or fast) runs one pass only.
cluster_start "$dir" "$port" \
    "shared_preload_libraries = 'pg_callback, pg_stat_statements'" \
    "pg_callback.database = 'postgres'" \
    "pg_callback.workers = ${PG_CALLBACK_BENCH_WORKERS:-2}" \
    "pg_callback.batch_size = ${PG_CALLBACK_BENCH_BATCH:-1000}" \
    "pg_callback.max_in_flight = ${PG_CALLBACK_BENCH_IN_FLIGHT:-64}" \
    "pg_callback.max_in_flight_per_host = ${PG_CALLBACK_BENCH_PER_HOST:-16}" \
    "pg_callback.allowed_destinations = '127.0.0.1'" \
    "pg_callback.ca_bundle = '$nginx_dir/ca.pem'" \
    "max_worker_processes = 16" \
    "fsync = on" \
    "synchronous_commit = on" \
    "shared_buffers = '1GB'" \
    "max_wal_size = '4GB'"

passes=${PG_CALLBACK_BENCH_DURABILITY:-durable fast}
for pass in $passes; do
    if [ "$pass" = fast ]; then
        cluster_psql "$dir" "$port" -c "ALTER SYSTEM SET fsync = off" -c "ALTER SYSTEM SET synchronous_commit = off" \
            -c "SELECT pg_reload_conf()" >/dev/null
        settings="fsync = off, synchronous_commit = off"
    else
        settings="fsync = on, synchronous_commit = on"
    fi
    echo "== $pass: $settings"
    python3 bench/bench.py --cluster-dir "$dir" --port "$port" --nginx-dir "$nginx_dir" --nginx-port "$nginx_port" \
        --nginx-tls-port "$nginx_tls_port" --s3-port "$s3_port" --label "$pass" "$@"
done
