#!/usr/bin/env bash
# Fails when the committed Python stubs of the fleet client differ from what gen.sh generates
# from proto/ now (the Python side of `make proto-check`), or when the client does not
# type-check (mypy, configured in pyproject.toml).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
"$here/gen.sh"
eval "$("$here/setup.sh")"
status=$(git status --porcelain --untracked-files=all -- src/fleet_client/_proto)
if [[ -n $status ]]; then
  echo "python-client-check: the generated stubs differ from the committed tree after regeneration:" >&2
  echo "$status" >&2
  echo "python-client-check: run tools/python-client/gen.sh (make python-client) and commit the result" >&2
  exit 1
fi
echo "python-client-check: generated stubs match proto/fleet/job/v1/job.proto" >&2
"$FLEET_CLIENT_PYTHON" -m mypy --no-incremental
