#!/usr/bin/env bash
# Fails when the committed generated code differs from what protos/ generates now.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
bash scripts/protos.sh "$fresh"
# client.py is the package's one hand-written module (the published client's helpers).
if ! diff -r -x __pycache__ -x client.py "$fresh" libs/meshplate-api/src; then
  echo "protos-check: libs/meshplate-api is stale; run 'make protos' and commit the result" >&2
  exit 1
fi
