#!/usr/bin/env bash
# Fails when protos/ breaks the contracts of meshplate-api's last release (buf breaking, the
# FILE rules of protos/buf.yaml, against libs/meshplate-api/releases/v<latest>.json).
set -euo pipefail
cd "$(dirname "$0")/.."
latest=$(ls libs/meshplate-api/releases/v*.json 2>/dev/null | sort -V | tail -n 1)
if [[ -z "$latest" ]]; then
  echo "api-breaking: no release recorded yet (make release-api)"
  exit 0
fi
(cd protos && buf breaking --against "../$latest")
