#!/usr/bin/env bash
# Regenerates the Python messages and gRPC stubs of proto/fleet/job/v1/job.proto into
# src/fleet_client/_proto with the grpcio-tools pinned in requirements.txt (setup.sh installs it).
# The generated files are committed; check.sh fails when they differ from a fresh generation.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
eval "$("$here/setup.sh")"

out="$here/src/fleet_client/_proto"
# Remove what an earlier run generated so that a renamed .proto leaves nothing behind.
find "$out" -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \) -delete
"$FLEET_CLIENT_PYTHON" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  fleet/job/v1/job.proto
# protoc writes imports relative to the proto root ("from fleet.job.v1 import job_pb2"); the
# modules live inside the fleet_client package instead.
sed -i 's/^from fleet\.job\.v1 import /from fleet_client._proto.fleet.job.v1 import /' \
  "$out/fleet/job/v1/job_pb2_grpc.py"
for d in "$out" "$out/fleet" "$out/fleet/job" "$out/fleet/job/v1"; do
  [ -f "$d/__init__.py" ] || : >"$d/__init__.py"
done
echo "python-client: generated $(cd "$out" && find . -name '*_pb2*' | sort | tr '\n' ' ')" >&2
