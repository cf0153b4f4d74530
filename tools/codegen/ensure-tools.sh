#!/usr/bin/env bash
# Builds the code-generation tools pinned in tools/codegen/go.mod (buf, protoc-gen-go,
# protoc-gen-go-grpc) once and prints the directory holding the binaries. The directory is keyed
# by go.mod, go.sum and the Go version, so a version bump builds afresh and an unchanged pin
# reuses the earlier build. Override the location with FLEET_CODEGEN_BIN.
set -euo pipefail

codegen_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=(
  github.com/bufbuild/buf/cmd/buf
  google.golang.org/protobuf/cmd/protoc-gen-go
  google.golang.org/grpc/cmd/protoc-gen-go-grpc
)

key=$( { cat "$codegen_dir/go.mod" "$codegen_dir/go.sum"; go env GOVERSION GOOS GOARCH; } \
  | sha256sum | cut -c1-16)
bin=${FLEET_CODEGEN_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/cosmic-horizons-fleet/codegen/$key}

complete=true
for t in "${tools[@]}"; do
  [[ -x "$bin/${t##*/}" ]] || complete=false
done

if [[ $complete == false ]]; then
  echo "building pinned code-generation tools into $bin (the first build of buf takes minutes)" >&2
  mkdir -p "$(dirname "$bin")"
  tmp=$(mktemp -d "$(dirname "$bin")/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The codegen module is deliberately outside go.work: build it on its own.
  (cd "$codegen_dir" && GOWORK=off GOFLAGS=-mod=readonly go build -o "$tmp/" "${tools[@]}")
  mkdir -p "$bin"
  for t in "${tools[@]}"; do
    mv -f "$tmp/${t##*/}" "$bin/${t##*/}"
  done
fi

echo "$bin"
