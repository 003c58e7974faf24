#!/usr/bin/env bash
# The pg_callback demo: installs what is missing, builds and installs the extension into a
# throwaway PostgreSQL 15 cluster, and runs demo/demo.sql in it, echoing each statement.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-tools.sh
source scripts/cluster.sh

echo "== building and installing pg_callback"
cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null

dir=${PG_CALLBACK_DEMO_DIR:-/tmp/pg_callback_demo}
port=${PG_CALLBACK_DEMO_PORT:-55433}
trap 'cluster_stop "$dir"' EXIT
cluster_start "$dir" "$port"
cluster_psql "$dir" "$port" -c "CREATE EXTENSION pg_callback"
cluster_psql "$dir" "$port" -v ON_ERROR_STOP=0 -e -f demo/demo.sql
