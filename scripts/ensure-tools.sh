#!/usr/bin/env bash
# Installs what building, testing and demonstrating pg_callback needs, skipping what is there:
# Debian's PostgreSQL 15 with its server headers, clang, sudo, the system's CA certificates, and
# cargo-pgrx 0.18.0 set up for it.
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in postgresql-15 postgresql-client-15 postgresql-server-dev-15 libclang-dev clang sudo ca-certificates "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q ' 0\.18\.0$'; then
    echo "installing cargo-pgrx 0.18.0 (about 6 minutes)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi

if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 "$PG_CONFIG"
fi
