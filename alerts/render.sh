#!/usr/bin/env bash
# Render alerts/openclaw.rules.yml with other windows, for tests that cannot wait 15 minutes:
#   alerts/render.sh RANGE PAGE_FOR WARN_FOR  > rules.yml
# RANGE replaces every [5m] rate/increase window, PAGE_FOR the 15m holds, WARN_FOR the 10m and 5m holds.
# The rules themselves are never copied: this is the production file with three numbers changed.
set -euo pipefail
range=${1:?range, e.g. 30s}
page_for=${2:?page for, e.g. 20s}
warn_for=${3:?warn for, e.g. 10s}
sed -e "s/\[5m\]/[$range]/g" -e "s/\[15m\]/[$range]/g" \
    -e "s/for: 15m/for: $page_for/" -e "s/for: 10m/for: $warn_for/" -e "s/for: 5m/for: $warn_for/" \
    "$(dirname "$0")/openclaw.rules.yml"
