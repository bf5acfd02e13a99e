#!/usr/bin/env bash
# Generates Python from protos/ (grpcio-tools + mypy-protobuf stubs) into libs/meshplate-api/src,
# or into the folder given as $1 (protos-check compares such a fresh copy with the committed one).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-libs/meshplate-api/src}
mkdir -p "$out/meshplate" "$out/envoy_rls"
find "$out/meshplate" "$out/envoy_rls" -mindepth 1 -name '*_pb2*' -delete
generate() {  # $1: include root, then the files relative to it
  local root=$1
  shift
  python -m grpc_tools.protoc -I "$root" \
    --python_out="$out" --mypy_out="quiet:$out" \
    --grpc_python_out="$out" --mypy_grpc_out="generate_concrete_servicer_stubs,quiet:$out" "$@"
}
mapfile -t files < <(cd protos && find meshplate -name '*.proto' | sort)
generate protos "${files[@]}"
# Envoy's API is rooted at protos/third_party, so its module is envoy_rls.rls_pb2.
generate protos/third_party envoy_rls/rls.proto
# Every generated directory is a regular package, so the wheel and mypy see one import root.
find "$out/meshplate" "$out/envoy_rls" -type d -exec touch {}/__init__.py \;
touch "$out/meshplate/py.typed" "$out/envoy_rls/py.typed"
