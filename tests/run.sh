#!/usr/bin/env bash
# Runs every test of pg_callback: installs what is missing, then
#   1. core: the unit tests of the pgrx-free crate (cargo test -p pg_callback_core, no cluster),
#   2. unit: the #[pg_test]s (cargo pgrx test, in pgrx's own cluster),
#   3. regress: the pg_regress suite (tests/pg_regress, one file per concept) against a real
#      cluster with the extension installed,
#   4. isolation: the pg_isolation_regress specs (tests/isolation), races between sessions,
#   5. integration: the integration tests (tests/integration, pytest): a cluster with the
#      library preloaded and its workers delivering to a real HTTP receiver on loopback that
#      each test controls.
# Exits non-zero if anything fails. Arguments pick stages (core unit regress isolation
# integration), e.g. `bash tests/run.sh regress`; none runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/ensure-tools.sh
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/integration/requirements.txt
# The S3-compatible server the report tests start (behind their signature check).
bash scripts/ensure-s3rver.sh
source scripts/cluster.sh

work=${PG_CALLBACK_TEST_DIR:-/tmp/pg_callback_tests}
mkdir -p "$work"
chown postgres: "$work" 2>/dev/null || true

stages=" ${*:-core unit regress isolation integration} "
wanted() { [[ $stages == *" $1 "* ]]; }

if wanted core; then
echo "== core unit tests (no cluster)"
cargo test -p pg_callback_core
fi

if wanted unit; then
echo "== #[pg_test]s"
mkdir -p "$work/pgrx-data"
chown postgres: "$work/pgrx-data" 2>/dev/null || true
cargo pgrx test pg15 --runas postgres --pgdata "$work/pgrx-data"
fi

# Installs the extension into Debian's PostgreSQL 15, once for the stages that need it.
installed=no
install_extension() {
    if [ "$installed" = no ]; then
        cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
        installed=yes
    fi
}
clusters=()
trap 'for c in "${clusters[@]}"; do cluster_stop "$c"; done' EXIT

# Starts a cluster of its own for suite `name` on `port` with the settings given after them,
# runs pg_regress or pg_isolation_regress (`runner`) on the tests of `input` in database
# pg_callback_<name>, stops the cluster, and prints the tally.
run_suite() {
    local runner=$1 input=$2 name=$3 port=$4
    shift 4
    install_extension
    local cluster="$work/$name-cluster"
    clusters+=("$cluster")
    cluster_start "$cluster" "$port" "$@"
    local out="$work/$name-out"
    rm -rf "$out" && mkdir -p "$out"
    chown postgres: "$out" 2>/dev/null || true
    local sources=sql
    [ -d "$input/specs" ] && sources=specs
    local tests
    tests=$(ls "$input/$sources" | sed 's/\.[a-z]*$//' | sort)
    local status=0
    "$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pgxs/src/test/$runner" \
        --inputdir="$input" --outputdir="$out" --bindir=/usr/lib/postgresql/15/bin \
        --host="$cluster" --port="$port" --user=postgres --dbname="pg_callback_$name" \
        $tests | tee "$work/$name.log" || status=$?
    cluster_stop "$cluster"
    if [ "$status" != 0 ] && [ -f "$out/regression.diffs" ]; then
        cat "$out/regression.diffs"
    fi
    local passed failed
    passed=$(grep -Ec '^(ok|test) .* \.\.\. ok' "$work/$name.log" || true)
    failed=$(grep -Ec '\.\.\. FAILED' "$work/$name.log" || true)
    echo "$(basename "$runner"): $passed passed, $failed failed"
    return "$status"
}

if wanted regress; then
echo "== pg_regress"
run_suite regress/pg_regress "$root/tests/pg_regress" regress "${PG_CALLBACK_TEST_PORT:-55431}"
fi

if wanted isolation; then
echo "== pg_isolation_regress"
# The specs run the workers' own statements: @CLAIM@ stands for sql/worker/claim.sql.
input="$work/isolation-in"
rm -rf "$input" && mkdir -p "$input/specs"
cp -r tests/isolation/expected "$input/"
for spec in tests/isolation/specs/*.spec; do
    python3 -c 'import sys; print(open(sys.argv[1]).read().replace("@CLAIM@", open(sys.argv[2]).read()), end="")' \
        "$spec" sql/worker/claim.sql > "$input/specs/$(basename "$spec")"
done
chown -R postgres: "$input" 2>/dev/null || true
# Preloaded, so that recording keeps its per-backend cache as it does in production; the
# workers serve another database, so nothing but the specs touches their callbacks.
run_suite isolation/pg_isolation_regress "$input" isolation "${PG_CALLBACK_ISOLATION_PORT:-55432}" \
    "shared_preload_libraries = 'pg_callback'" "pg_callback.database = 'postgres'"
fi

if wanted integration; then
echo "== integration tests"
install_extension
export PG_CALLBACK_FAULT_REPORT="$work/faults.md"
python3 -m pytest -q tests/integration
echo "== the fault suite's tally (RELIABILITY.md)"
cat "$PG_CALLBACK_FAULT_REPORT"
fi
