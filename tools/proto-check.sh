#!/usr/bin/env bash
# Checks the contracts in proto/:
#   1. regenerating the Go code changes nothing under proto/ (the committed generated code
#      matches the .proto files, and nothing there is left uncommitted);
#   2. the contracts are wire- and JSON-compatible with an earlier commit (buf breaking).
# The breaking check compares against HEAD~1 by default. PROTO_BREAKING_AGAINST overrides it with
# another git ref (for example origin/main), or with a complete buf input when it contains '#'.
# A change that must break a contract goes into a new package version (fleet.<area>.v2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

"$root/tools/proto-gen.sh"

status=$(git status --porcelain --untracked-files=all -- proto/)
if [[ -n $status ]]; then
  echo "proto-check: proto/ differs from the committed tree after regeneration:" >&2
  echo "$status" >&2
  git --no-pager diff --stat -- proto/ >&2 || true
  echo "proto-check: run tools/proto-gen.sh (make proto) and commit the result" >&2
  exit 1
fi
echo "proto-check: generated code matches the .proto files" >&2

bin=$("$root/tools/codegen/ensure-tools.sh")
export PATH="$bin:$PATH"

ref=${PROTO_BREAKING_AGAINST:-HEAD~1}
if [[ $ref == *'#'* ]]; then
  against=$ref
else
  # Only the default may be missing (the first commit has no parent, a shallow clone may lack
  # it); a ref named in PROTO_BREAKING_AGAINST must exist.
  if ! commit=$(git rev-parse --verify --quiet "$ref^{commit}"); then
    if [[ -n ${PROTO_BREAKING_AGAINST:-} ]]; then
      echo "proto-check: PROTO_BREAKING_AGAINST=$ref is not a commit" >&2
      exit 1
    fi
    echo "proto-check: breaking check skipped: $ref does not exist (first commit, or a shallow clone)" >&2
    exit 0
  fi
  if ! git cat-file -e "$commit:proto/buf.yaml" 2>/dev/null; then
    echo "proto-check: breaking check skipped: $ref ($commit) has no proto/buf.yaml, nothing to compare against" >&2
    exit 0
  fi
  # The common git directory (the repository's .git, also from a linked worktree, whose own
  # git directory buf does not recognise as a repository).
  against="$(git rev-parse --path-format=absolute --git-common-dir)#ref=$commit,subdir=proto"
fi
echo "proto-check: buf breaking against $against" >&2
buf breaking proto --against "$against"
echo "proto-check: no breaking changes" >&2
