#!/usr/bin/env bash
# Regenerates libs/meshplate-api/src from protos/ (grpcio-tools + mypy-protobuf stubs).
set -euo pipefail
cd "$(dirname "$0")/.."
out=libs/meshplate-api/src
find "$out/meshplate" -mindepth 1 -name '*_pb2*' -delete
mapfile -t files < <(cd protos && find . -name '*.proto' -printf '%P\n' | sort)
python -m grpc_tools.protoc -I protos \
  --python_out="$out" --mypy_out="$out" --grpc_python_out="$out" --mypy_grpc_out="generate_concrete_servicer_stubs:$out" "${files[@]}"
# Every generated directory is a regular package, so the wheel and mypy see one import root.
find "$out/meshplate" -type d -exec touch {}/__init__.py \;
touch "$out/meshplate/py.typed"
