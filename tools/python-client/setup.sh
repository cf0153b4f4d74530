#!/usr/bin/env bash
# Installs the Python client's toolchain (grpcio-tools for the stubs, pytest for its suite) from
# PyPI into a virtual environment, with the versions pinned in requirements.txt.
#
#   tools/python-client/setup.sh        install what is missing; prints export lines
#   eval "$(tools/python-client/setup.sh)"
#
# Idempotent: a second run finds the environment by a stamp of requirements.txt and takes well
# under a second. It lives under $FLEET_PYTHON_CLIENT_HOME (default
# $FLEET_STACK_HOME/python-client, /var/lib/fleet-stack/python-client). The client package itself
# is not installed here (several checkouts share the environment): the tests pip-install it from
# the checkout into a directory of their own.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home=${FLEET_PYTHON_CLIENT_HOME:-${FLEET_STACK_HOME:-/var/lib/fleet-stack}/python-client}
mkdir -p "$home"
log() { printf '==> %s\n' "$*" >&2; }

venv="$home/venv"
stamp=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if ! { [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; }; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    log "installing python3-venv"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  fi
  log "creating the Python environment of the fleet client (once)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$stamp" >"$venv/.stamp"
fi

echo "export FLEET_CLIENT_PYTHON='$venv/bin/python'"
echo "export FLEET_CLIENT_DIR='$here'"
