#!/usr/bin/env bash
# Runs every fuzz target of the packages below, one after the other, each for
# FUZZTIME (a duration such as 60s, or a number of inputs such as 300x).
# The RPC targets send random requests through each service's real gRPC
# interceptors and handlers (libs/service/servicefuzz).
#
#   tools/fuzz.sh 300x      # the short run of `make test`
#   tools/fuzz.sh 60s       # `make fuzz` (FUZZTIME=60s)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${1:-60s}
# Minimizing a new input reruns it many times; bound it so that a run ends
# on time (the Go fuzzer reports "context deadline exceeded" when its time
# runs out while a worker is still minimizing).
MINIMIZE=${FUZZ_MINIMIZE:-50x}
PACKAGES=(
	./libs/events
	./libs/auditchain
	./services/job-orchestrator/internal/ports
	./services/metrics-consumer/internal/ports
	./services/notification-consumer/internal/ports
	./services/compliance-auditor/internal/ports
	./services/health-monitor/internal/ports
)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
start=$SECONDS
for pkg in "${PACKAGES[@]}"; do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
		t0=$SECONDS
		if ! go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$MINIMIZE" >"$log" 2>&1; then
			echo "FAIL $pkg $target"
			cat "$log"
			exit 1
		fi
		execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 || true)
		printf '  ok %-48s %-36s %s (%ds)\n' "$pkg" "$target" "${execs:-}" $((SECONDS - t0))
		n=$((n + 1))
	done
done
echo "==> $n fuzz targets for $FUZZTIME each in $((SECONDS - start))s"
