#!/usr/bin/env bash
# Runs the five fleet services against the local stack (see `make up`) until
# Ctrl-C, then stops them gracefully. Binaries come from bin/ (`make build`);
# logs go to ${FLEET_RUN_DIR:-.run}/<service>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(tools/stack/stack.sh env)"
run_dir=${FLEET_RUN_DIR:-.run}
mkdir -p "$run_dir"

# service grpc-port http-port
services=(
  "job-orchestrator 50051 8081"
  "metrics-consumer 50052 8082"
  "notification-consumer 50053 8083"
  "compliance-auditor 50054 8084"
  "health-monitor 50055 8085"
)
pids=()

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
trap stop_all INT TERM EXIT

for entry in "${services[@]}"; do
  read -r name grpc http <<<"$entry"
  GRPC_ADDR="127.0.0.1:$grpc" HTTP_ADDR="127.0.0.1:$http" \
    "bin/$name" >"$run_dir/$name.log" 2>&1 &
  pids+=("$!")
  echo "==> started $name (pid $!, gRPC 127.0.0.1:$grpc, HTTP 127.0.0.1:$http)"
done

for entry in "${services[@]}"; do
  read -r name _ http <<<"$entry"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  if curl -fsS "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then
    echo "    $name ready"
  else
    echo "    $name NOT ready; see $run_dir/$name.log" >&2
  fi
done

cat <<MSG

The fleet is running. Where to look:
  metrics        http://127.0.0.1:8081/metrics ... http://127.0.0.1:8085/metrics
  readiness      http://127.0.0.1:808N/readyz
  gRPC           127.0.0.1:50051 (job-orchestrator) ... 127.0.0.1:50055 (health-monitor), with reflection
  RabbitMQ UI    ${RABBITMQ_MGMT_URL:-http://127.0.0.1:15672}
  Kafka          ${KAFKA_BROKERS}
  logs           $run_dir/<service>.log
Press Ctrl-C to stop the services.
MSG
wait
