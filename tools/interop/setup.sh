#!/usr/bin/env bash
# Installs the Avro implementations that check the fleet's events from outside:
# Apache Avro's Java reference (with the Kafka Java client) from Maven Central, and
# fastavro (with confluent-kafka) from PyPI into a virtual environment.
#
#   tools/interop/setup.sh        install what is missing; prints export lines
#   eval "$(tools/interop/setup.sh)"
#
# Idempotent: a second run finds the jars and the environment by a stamp of their inputs
# and takes well under a second. Everything lives under $FLEET_INTEROP_HOME
# (default $FLEET_STACK_HOME/interop, /var/lib/fleet-stack/interop).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
home=${FLEET_INTEROP_HOME:-${FLEET_STACK_HOME:-/var/lib/fleet-stack}/interop}
mkdir -p "$home"
log() { printf '==> %s\n' "$*" >&2; }

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# Java: the jars named by java/pom.xml.
jars="$home/jars"
jstamp=$(sha256sum "$here/java/pom.xml" | cut -c1-16)
if ! stamp_ok "$jars/.stamp" "$jstamp"; then
  log "resolving Apache Avro and kafka-clients jars with Maven (once)"
  rm -rf "$jars"
  mvn -q -B -Dstyle.color=never -f "$here/java/pom.xml" dependency:copy-dependencies -DoutputDirectory="$jars" >&2
  echo "$jstamp" >"$jars/.stamp"
fi

# Python: a virtual environment with python/requirements.txt.
venv="$home/venv"
pstamp=$(sha256sum "$here/python/requirements.txt" | cut -c1-16)
if ! stamp_ok "$venv/.stamp" "$pstamp"; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    log "installing python3-venv"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  fi
  log "creating the Python environment for fastavro (once)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/python/requirements.txt" >&2
  echo "$pstamp" >"$venv/.stamp"
fi

echo "export INTEROP_JAVA_CLASSPATH='$jars/*'"
echo "export INTEROP_PYTHON='$venv/bin/python'"
echo "export INTEROP_DIR='$here'"
