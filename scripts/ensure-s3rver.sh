#!/usr/bin/env bash
# Installs s3rver (an S3-compatible server, from npm) into .cache/node unless it is there: the
# report tests and the report benchmark start it. Installs Node.js first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .cache/node/node_modules/.bin/s3rver ]; then
    command -v npm >/dev/null || bash scripts/ensure-tools.sh nodejs npm
    npm install --silent --no-audit --no-fund --prefix .cache/node s3rver@3.7.1
fi
