#!/usr/bin/env bash
# Submits a demo batch to a running fleet (tools/run.sh starts one) and
# shows every job's transitions live until all have ended: jobs of the three
# agents across the four systems, one that fails and one that is cancelled.
#
# Environment: FLEET_DEV_SECRET (the orchestrator's HS256 secret),
# FLEET_SCHEDULER (local or slurm, for the partitions), NOTIFY_READY (1 when
# the notification-consumer is up: the demo user then gets emails),
# FLEET_JOB_ADDR (default 127.0.0.1:50051).
set -euo pipefail
cd "$(dirname "$0")/../.."

chctl=bin/chctl
jaeger=${JAEGER_QUERY_URL:-http://127.0.0.1:16686}
user=demo-researcher
: "${FLEET_DEV_SECRET:?set FLEET_DEV_SECRET (the AUTH_HS256_SECRET of the orchestrator)}"
FLEET_TOKEN=$($chctl token -secret "$FLEET_DEV_SECRET" -user "$user")
export FLEET_TOKEN

echo
echo "==> demo batch for user $user (development token from \`chctl token\`)"
if [ "${NOTIFY_READY:-0}" = 1 ]; then
  $chctl notify subscribe -email "$user@fleet.example.org" \
    -events job.completed,job.failed,job.cancelled | sed 's/^/    /'
else
  echo "    notification-consumer not ready: no email subscription"
fi

# Partitions: the built-in TACC catalogue on the local scheduler; the stack
# Slurm's one partition ("normal", mapped for every system by run.sh) on Slurm.
declare -A part=([frontera]=development [stampede3]=skx-dev [lonestar6]=development [vista]=gg)
if [ "${FLEET_SCHEDULER:-local}" = slurm ]; then
  part=([frontera]=normal [stampede3]=normal [lonestar6]=normal [vista]=normal)
fi

# The agents run their own program (fleet-agent) when it is installed; on a
# machine without it, each agent's job is a command that simulates it.
simulated=1
if command -v fleet-agent >/dev/null 2>&1; then simulated=0; fi
if [ "$simulated" = 1 ]; then
  echo "    fleet-agent is not installed here: the agents' jobs run commands that SIMULATE them (echo + sleep)"
fi
agent_payload() { # agent seconds
  if [ "$simulated" = 1 ]; then
    printf -- "-command\nsh -c 'echo $1 on \$FLEET_DATASET_ID; sleep $2; echo $1 done'\n"
  fi
}

ids=() names=()
submit() { # name system agent dataset [extra chctl args...]
  local name=$1 system=$2 agent=$3 dataset=$4
  shift 4
  local out
  out=$($chctl jobs submit -name "$name" -agent "$agent" -dataset "$dataset" -system "$system" \
    -partition "${part[$system]}" -cores 1 -walltime 10m "$@")
  ids+=("$(awk '/^job /{print $2; exit}' <<<"$out")")
  names+=("$name")
  printf '    %-26s %-10s %s\n' "$name" "$system" "$(head -1 <<<"$out")"
  sed -n -e 's/^  cost estimate  */      cost /p' -e "s|^  trace id  *|      trace $jaeger/trace/|p" <<<"$out"
}

mapfile -t p < <(agent_payload AlphaCal 6)
submit alphacal-vla-cal-01 frontera AlphaCal vla-2024-11-17 "${p[@]}"
mapfile -t p < <(agent_payload ImageReconstruction 9)
submit imaging-m87-deep stampede3 ImageReconstruction m87-calibrated "${p[@]}"
mapfile -t p < <(agent_payload AnomalyDetection 5)
submit anomaly-frb-sweep lonestar6 AnomalyDetection frb-sweep-42 "${p[@]}"
mapfile -t p < <(agent_payload AlphaCal 4)
submit alphacal-meerkat-02 vista AlphaCal meerkat-l-band "${p[@]}"
submit broken-pipeline lonestar6 custom ds-none -command "sh -c 'echo reading calibration table >&2; sleep 3; exit 2'"
submit long-survey-to-cancel frontera custom ds-survey -command "sleep 600"
cancel_id=${ids[-1]}

echo
echo "==> live transitions (chctl jobs watch, one per job)"
watchers=()
for i in "${!ids[@]}"; do
  $chctl jobs watch "${ids[$i]}" -replay -prefix "$(printf '%-24s ' "${names[$i]}")" &
  watchers+=("$!")
done
# Cancel the long job once it runs.
for _ in $(seq 1 120); do
  if $chctl jobs get "$cancel_id" | grep -q 'RUNNING'; then break; fi
  sleep 0.5
done
$chctl jobs cancel "$cancel_id" -reason "demo: superseded by a newer survey" >/dev/null
for pid in "${watchers[@]}"; do wait "$pid" || true; done

echo
echo "==> the demo batch"
$chctl jobs list -limit "${#ids[@]}" | sed 's/^/    /'
