#!/usr/bin/env bash
# Generates Python from protos/ (grpcio-tools + mypy-protobuf stubs) into libs/meshplate-api/src,
# or into the folder given as $1 (protos-check compares such a fresh copy with the committed one).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-libs/meshplate-api/src}
mkdir -p "$out/meshplate"
find "$out/meshplate" -mindepth 1 -name '*_pb2*' -delete
mapfile -t files < <(cd protos && find . -name '*.proto' -printf '%P\n' | sort)
python -m grpc_tools.protoc -I protos \
  --python_out="$out" --mypy_out="quiet:$out" \
  --grpc_python_out="$out" --mypy_grpc_out="generate_concrete_servicer_stubs,quiet:$out" \
  "${files[@]}"
# Every generated directory is a regular package, so the wheel and mypy see one import root.
find "$out/meshplate" -type d -exec touch {}/__init__.py \;
touch "$out/meshplate/py.typed"
