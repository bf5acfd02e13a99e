#!/usr/bin/env bash
# Records the contracts of meshplate-api's current version as a buf image
# (libs/meshplate-api/releases/v<version>.json): what `make lint` keeps every later change of
# protos/ compatible with (scripts/api_breaking.sh). Run it when releasing the package, and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python -c 'import tomllib; print(tomllib.load(open("libs/meshplate-api/pyproject.toml", "rb"))["project"]["version"])')
image="libs/meshplate-api/releases/v${version}.json"
if [[ -e "$image" ]]; then
  echo "release-api: $image exists; raise the version in libs/meshplate-api/pyproject.toml first" >&2
  exit 1
fi
mkdir -p "$(dirname "$image")"
(cd protos && buf build --exclude-source-info -o "../$image")
echo "release-api: recorded $image"
