#!/usr/bin/env bash
# Runs every test of pg_callback: installs what is missing, then
#   1. the Rust unit tests and #[pg_test]s (cargo pgrx test, in pgrx's own cluster),
#   2. the pg_regress suite (tests/pg_regress, one file per concept) against a real cluster
#      with the extension installed,
#   3. the integration tests (tests/integration, pytest): a cluster with the library preloaded
#      and its workers delivering to a real HTTP receiver on loopback that each test controls.
# Exits non-zero if anything fails. Arguments pick stages (unit regress integration), e.g.
# `bash tests/run.sh regress`; none runs all three.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/ensure-tools.sh
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/integration/requirements.txt
source scripts/cluster.sh

work=${PG_CALLBACK_TEST_DIR:-/tmp/pg_callback_tests}
mkdir -p "$work"
chown postgres: "$work" 2>/dev/null || true

stages=" ${*:-unit regress integration} "
wanted() { [[ $stages == *" $1 "* ]]; }

if wanted unit; then
echo "== unit tests and #[pg_test]s"
mkdir -p "$work/pgrx-data"
chown postgres: "$work/pgrx-data" 2>/dev/null || true
cargo pgrx test pg15 --runas postgres --pgdata "$work/pgrx-data"
fi

if wanted regress; then
echo "== pg_regress"
cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
cluster="$work/regress-cluster"
port=${PG_CALLBACK_TEST_PORT:-55431}
trap 'cluster_stop "$cluster"' EXIT
cluster_start "$cluster" "$port"
out="$work/regress-out"
rm -rf "$out" && mkdir -p "$out"
chown postgres: "$out" 2>/dev/null || true
tests=$(ls tests/pg_regress/sql | sed 's/\.sql$//' | sort)
status=0
"$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --inputdir="$root/tests/pg_regress" --outputdir="$out" \
    --host="$cluster" --port="$port" --user=postgres --dbname=pg_callback_regress \
    $tests | tee "$work/regress.log" || status=$?
if [ "$status" != 0 ] && [ -f "$out/regression.diffs" ]; then
    cat "$out/regression.diffs"
fi
passed=$(grep -Ec '^(ok|test) .* \.\.\. ok' "$work/regress.log" || true)
failed=$(grep -Ec '\.\.\. FAILED' "$work/regress.log" || true)
echo "pg_regress: $passed passed, $failed failed"
[ "$status" = 0 ] || exit "$status"
cluster_stop "$cluster"
fi

if wanted integration; then
echo "== integration tests"
export PG_CALLBACK_FAULT_REPORT="$work/faults.md"
python3 -m pytest -q tests/integration
echo "== the fault suite's tally (RELIABILITY.md)"
cat "$PG_CALLBACK_FAULT_REPORT"
fi
