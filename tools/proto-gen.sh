#!/usr/bin/env bash
# Lints proto/ and regenerates its Go code (messages and gRPC stubs, written next to each
# .proto) with the tool versions pinned in tools/codegen/go.mod.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$("$root/tools/codegen/ensure-tools.sh")
export PATH="$bin:$PATH"

cd "$root/proto"
echo "buf $(buf --version): lint" >&2
buf lint
# Remove what an earlier run generated so that a deleted or renamed .proto leaves nothing behind.
find fleet -type f \( -name '*.pb.go' -o -name '*_grpc.pb.go' \) -delete
echo "generate: $(protoc-gen-go --version), $(protoc-gen-go-grpc --version)" >&2
buf generate
echo "proto: generated Go is up to date in $root/proto" >&2
