#!/usr/bin/env bash
# Runs the five fleet services against the local stack (see `make up`),
# submits a demo batch with chctl (tools/demo/demo.sh), and keeps the
# services running until Ctrl-C, then stops them gracefully. The stack keeps
# running (`make down` stops it). Binaries come from bin/ (`make build`).
#
# Environment (all optional):
#   FLEET_RUN_DIR     state, logs and SQLite databases [.run]
#   FLEET_DEV_SECRET  the HS256 secret shared by the services that check JWTs
#                     [a fixed development value: never use it in production]
#   FLEET_DEMO        0 skips the demo batch [1]
#   SCHEDULER         local or slurm [slurm when the stack has slurmrestd, else local]
#                     The local scheduler isolates jobs (own uid and cgroup each) when
#                     run as root, and runs them unisolated otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(tools/stack/stack.sh env)"
run_dir=${FLEET_RUN_DIR:-.run}
mkdir -p "$run_dir"
run_dir=$(cd "$run_dir" && pwd)
export FLEET_DEV_SECRET=${FLEET_DEV_SECRET:-fleet-development-secret-not-for-production}
group_prefix=fleet-

# service grpc-port http-port
services=(
  "job-orchestrator 50051 8081"
  "metrics-consumer 50052 8082"
  "notification-consumer 50053 8083"
  "compliance-auditor 50054 8084"
  "health-monitor 50055 8085"
)
pids=()

# Every service exports its spans to the stack's Jaeger and uses its Kafka.
common_env=(
  "KAFKA_BROKERS=$KAFKA_BROKERS"
  "OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
  "OTEL_EXPORTER_OTLP_PROTOCOL=${OTEL_EXPORTER_OTLP_PROTOCOL:-http/protobuf}"
  "LOG_LEVEL=${LOG_LEVEL:-info}"
)

scheduler=${SCHEDULER:-}
if [ -z "$scheduler" ]; then
  if [ -n "${SLURMRESTD_URL:-}" ]; then scheduler=slurm; else scheduler=local; fi
fi
orchestrator_env=(
  "DATABASE_URL=${ORCHESTRATOR_DATABASE_URL:-sqlite://$run_dir/orchestrator.db}"
  "STATE_DIRECTORY=$run_dir/orchestrator"
  "AMQP_URL=$AMQP_URL"
  "AUTH_HS256_SECRET=$FLEET_DEV_SECRET"
  "PAGE_TOKEN_KEY=$FLEET_DEV_SECRET-page-tokens"
  "SCHEDULER=$scheduler"
  "RECONCILE_INTERVAL=1s"
)
if [ "$scheduler" = local ]; then
  if [ "$(id -u)" != 0 ]; then
    # Only root can give each job its own uid and cgroup.
    echo "==> not root: the local scheduler runs jobs unisolated, as $(id -un) (LOCAL_SINGLE_USER=true)"
    orchestrator_env+=("LOCAL_SINGLE_USER=true")
  else
    # Job users must be able to search every directory above their job
    # directories; when the run directory is below a private one (a home
    # directory), the jobs go elsewhere.
    d=$run_dir
    while [ "$d" != / ]; do
      if [ -z "$(find "$d" -maxdepth 0 -perm -o+x)" ]; then
        jobs_dir=/var/tmp/fleet-run-jobs
        mkdir -p "$jobs_dir" && chmod 0711 "$jobs_dir"
        echo "==> $d is private: local jobs run in $jobs_dir"
        orchestrator_env+=("JOB_WORK_DIR=$jobs_dir")
        break
      fi
      d=$(dirname "$d")
    done
  fi
fi
if [ "$scheduler" = slurm ]; then
  # Jobs run as the stack's Slurm user: their output directory must be
  # writable by it, and every system maps to the stack Slurm's one
  # partition, "normal".
  jobs_dir=/tmp/fleet-run-jobs
  mkdir -p "$jobs_dir" && chmod 1777 "$jobs_dir"
  cat >"$run_dir/slurm-catalogue.json" <<'JSON'
{"systems": [
  {"name": "frontera",  "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "2h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]},
  {"name": "stampede3", "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "2h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]},
  {"name": "lonestar6", "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "2h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]},
  {"name": "vista",     "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "2h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]}
]}
JSON
  orchestrator_env+=(
    "JOB_WORK_DIR=$jobs_dir"
    "SYSTEM_CATALOGUE_FILE=$run_dir/slurm-catalogue.json"
    "SLURMRESTD_URL=$SLURMRESTD_URL" "SLURM_USER=${SLURM_USER:-}" "SLURM_JWT_TOKEN=${SLURM_JWT_TOKEN:-}"
  )
fi

if [ ! -f "$run_dir/audit-keys/audit-signing-key.pem" ]; then
  bin/chctl audit keygen -out "$run_dir/audit-keys" >/dev/null
fi

env_of() {
  case "$1" in
    job-orchestrator) printf '%s\n' "${orchestrator_env[@]}" ;;
    metrics-consumer)
      printf '%s\n' "DATABASE_URL=sqlite:$run_dir/metrics-consumer.db" "METRICS_GROUP=${group_prefix}metrics-consumer" \
        "AUTH_HS256_SECRET=$FLEET_DEV_SECRET" ;;
    notification-consumer)
      printf '%s\n' "DATABASE_URL=sqlite:$run_dir/notification-consumer.db" "AMQP_URL=$AMQP_URL" \
        "SMTP_ADDR=${SMTP_ADDR:-127.0.0.1:1025}" "KAFKA_CONSUMER_GROUP=${group_prefix}notification-consumer" \
        "AUTH_HS256_SECRET=$FLEET_DEV_SECRET" ;;
    compliance-auditor)
      printf '%s\n' "DATABASE_URL=sqlite:$run_dir/compliance-auditor.db" "AUDIT_CONSUMER_GROUP=${group_prefix}compliance-auditor" \
        "AUDIT_SIGNING_KEY_FILE=$run_dir/audit-keys/audit-signing-key.pem" "AUTH_HS256_SECRET=$FLEET_DEV_SECRET" ;;
    health-monitor)
      printf '%s\n' "AMQP_URL=$AMQP_URL" "RABBITMQ_MGMT_URL=${RABBITMQ_MGMT_URL:-}" "HEALTH_GROUP_PREFIX=$group_prefix" \
        "HEALTH_SERVICES=job-orchestrator=127.0.0.1:50051,metrics-consumer=127.0.0.1:50052,notification-consumer=127.0.0.1:50053,compliance-auditor=127.0.0.1:50054" ;;
  esac
}

echo "==> applying the topic catalogue"
bin/chctl topics

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping the fleet"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "==> stopped (the stack keeps running; \`make down\` stops it)"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

for entry in "${services[@]}"; do
  read -r name grpc http <<<"$entry"
  mapfile -t svc_env < <(env_of "$name")
  env "${common_env[@]}" "${svc_env[@]}" OTEL_SERVICE_NAME="$name" \
    GRPC_ADDR="127.0.0.1:$grpc" HTTP_ADDR="127.0.0.1:$http" \
    "bin/$name" >"$run_dir/$name.log" 2>&1 &
  pids+=("$!")
  echo "==> started $name (pid $!, gRPC 127.0.0.1:$grpc, HTTP 127.0.0.1:$http)"
done
echo "    scheduler: $scheduler; logs and databases in $run_dir"

notify_ready=0
for entry in "${services[@]}"; do
  read -r name _ http <<<"$entry"
  for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  if curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then
    echo "    $name ready"
    [ "$name" = notification-consumer ] && notify_ready=1
  else
    echo "    $name NOT ready; see $run_dir/$name.log" >&2
  fi
done

if [ "${FLEET_DEMO:-1}" != 0 ]; then
  NOTIFY_READY=$notify_ready FLEET_SCHEDULER=$scheduler tools/demo/demo.sh || echo "==> the demo batch did not finish cleanly (see above)" >&2
fi

jaeger=${JAEGER_QUERY_URL:-http://127.0.0.1:16686}
cat <<MSG

The fleet is running. Where to look:
  traces         $jaeger/search?service=job-orchestrator  (one trace per job: SubmitJob ->
                 dispatch and status changes -> outbox relay -> the four consumers -> email)
  status page    http://127.0.0.1:8085/status  (health-monitor)
  metrics        http://127.0.0.1:8081/metrics ... http://127.0.0.1:8085/metrics
  readiness      http://127.0.0.1:808N/readyz
MSG
if [ "$notify_ready" = 1 ]; then
  echo "  mail inbox     ${MAILPIT_URL:-http://127.0.0.1:8025}"
else
  echo "  mail inbox     (notification-consumer is not ready: no emails)"
fi
cat <<MSG
  gRPC           127.0.0.1:50051 (job-orchestrator) ... 127.0.0.1:50055 (health-monitor), with reflection
  RabbitMQ UI    ${RABBITMQ_MGMT_URL:-http://127.0.0.1:15672}
  logs           $run_dir/<service>.log
Try:  export FLEET_TOKEN=\$(bin/chctl token -secret "$FLEET_DEV_SECRET" -user demo-researcher)
      bin/chctl jobs list
Press Ctrl-C to stop the services (the stack keeps running; \`make down\` stops it).
MSG
wait
