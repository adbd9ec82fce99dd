#!/usr/bin/env bash
# Installs @tus/server + @tus/file-store + @tus/s3-store (pinned in benchmarks/node/package.json)
# into benchmarks/node/node_modules, for the reference servers benchmarks/node/server.mjs (run.py)
# and benchmarks/node/s3-server.mjs (s3.py).
# Usage: bash benchmarks/setup-node.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/node"
if ! command -v node >/dev/null 2>&1; then
    echo "setup-node.sh: node is not installed (Node >= 20.19 is needed by @tus/server 2.x)" >&2
    exit 1
fi
echo "node $(node --version), npm $(npm --version)"
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
node -e 'Promise.all(["@tus/server", "@tus/file-store", "@tus/s3-store"].map((m) => import(m))).then(() => console.log("@tus/server, @tus/file-store and @tus/s3-store import fine"))'
