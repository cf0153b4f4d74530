#!/usr/bin/env bash
# Local stack for Cosmic Horizons Fleet: installs and runs the brokers the fleet and its
# integration tests need, on loopback, without Docker.
#
# Components (one install_/start_/ready_/stop_/status_/env_/logs_ function set each):
#   kafka       Apache Kafka 4.x in KRaft combined mode (broker+controller per process); jars
#               resolved from Maven Central with mvn (tools/stack/kafka/pom.xml), run with the
#               machine's Java 17. 1 broker (127.0.0.1:9092) or 3 (9092, 9093, 9094), one quorum;
#               controllers listen on 19092+.
#   rabbitmq    Debian's rabbitmq-server with the management plugin
#               (AMQP 127.0.0.1:5672, HTTP API 127.0.0.1:15672, guest/guest).
#   postgresql  Debian's postgresql (15 on Debian 12), the packaged cluster 'main' started with
#               pg_ctlcluster on 127.0.0.1:5432; role fleet/fleet (CREATEDB) and database fleet.
#   mailpit     SMTP sink with an HTTP API (go install github.com/axllent/mailpit@v1.33.1):
#               SMTP 127.0.0.1:1025, HTTP 127.0.0.1:8025.
#   jaeger      Jaeger v1.76.0 all-in-one, in-memory (built from tools/stack/jaeger/go.mod,
#               config tools/stack/jaeger/config.yaml): OTLP gRPC 127.0.0.1:4317, OTLP HTTP
#               127.0.0.1:4318, UI and query API 127.0.0.1:16686.
#   slurm       Slurm 24.11 from Debian 13 (trixie), installed with debootstrap into its own
#               root file system ($FLEET_STACK_HOME/slurm24/root, mirror from the host's apt
#               sources), every daemon run with chroot: munged, MariaDB (127.0.0.1:3307) and
#               slurmdbd (7819) shared; per cluster (FLEET_STACK_SLURM_CLUSTERS, default
#               "frontera vista") slurmctld 7817, slurmd 7818 and slurmrestd (user slurmrest,
#               JWT) 127.0.0.1:7820, +10 per further cluster; jobs run as the user fleetjob.
#               `slurm-cluster NAME` adds a cluster of one's own to the same root (ports after
#               the stack's clusters, its own state, spool and logs) without touching the others.
#
# Usage:  stack.sh up [--kafka-brokers 1|3] [--components kafka,rabbitmq,...]
#         stack.sh down [--components ...]
#         stack.sh env | status | kafka-classpath | logs [-f]
#         stack.sh kafka-topics ARGS...   (TopicCommand against the running cluster)
#         stack.sh kafka-tool MAIN_CLASS ARGS...
#         stack.sh pg-fresh-db [NAME]     (new empty database owned by fleet; prints its URL)
#         stack.sh slurm-token [SECONDS [CLUSTER]]  (a slurmrestd JWT for fleetjob)
#         stack.sh slurm-cluster NAME     (a Slurm cluster of one's own beside the stack's, e.g. for
#                                          a test that restarts its slurmctld; prints its exports)
#   eval "$(tools/stack/stack.sh up)"   exports the addresses (progress goes to stderr).
#
# Environment:
#   FLEET_STACK_HOME           state, logs, caches and built tools (default /var/lib/fleet-stack)
#   FLEET_STACK_COMPONENTS     default component list
#                              (default kafka,rabbitmq,postgresql,mailpit,jaeger,slurm,chromium)
#   FLEET_STACK_KAFKA_VERSION  Kafka version from Maven Central (default 4.4.0)
#   FLEET_STACK_KAFKA_BROKERS  broker count when --kafka-brokers is not given (1 or 3)
#   FLEET_STACK_KAFKA_HEAP     max heap per broker (default 768m)
#   FLEET_STACK_KAFKA_GC       the brokers' garbage collector options (default ZGC: pauses well
#                              under a millisecond, so they do not show in publish latency)
#   FLEET_STACK_SLURM_TOKEN_LIFESPAN  seconds SLURM_JWT_TOKEN stays valid (default 86400)
#   FLEET_STACK_SLURM_CLUSTERS  Slurm clusters, space-separated (default "frontera vista"); cluster I
#                              gets the ports above + 10*I
#   FLEET_STACK_SLURM_SUITE    Debian suite of the Slurm root file system (default trixie)
#   FLEET_STACK_TIMEOUT        seconds to wait for a component to become ready (default 180)
#   FLEET_STACK_LOG_LINES      lines shown per file by `logs` (default 40)
#
# Exports printed by `up` / `env`:
#   KAFKA_BROKERS, KAFKA_CLASSPATH, AMQP_URL, RABBITMQ_MGMT_URL, DATABASE_URL_POSTGRES,
#   SMTP_ADDR, MAILPIT_URL, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
#   JAEGER_QUERY_URL, SLURMRESTD_URL, SLURM_USER, SLURM_JWT_TOKEN, FLEET_SLURM_CLUSTER,
#   FLEET_SLURM_CLUSTERS, SLURM_BIN_DIR (scontrol, sacct, ... of Slurm 24.11 for the first
#   cluster), FLEET_SLURM_ACCOUNT (not SLURM_CLUSTERS / SLURM_ACCOUNT: Slurm's own commands
#   read those as options), and per cluster SLURMRESTD_URL_<C>, SLURM_JWT_TOKEN_<C>, SLURM_BIN_DIR_<C>,
#   CHROMIUM_PATH
#
# Adding a component: write install_X, start_X, ready_X, stop_X, status_X, env_X and logs_X,
# and add X to KNOWN_COMPONENTS (and DEFAULT_COMPONENTS when `up` should start it).
set -euo pipefail

readonly KNOWN_COMPONENTS="kafka rabbitmq postgresql mailpit jaeger slurm chromium"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly STACK_HOME="${FLEET_STACK_HOME:-/var/lib/fleet-stack}"
readonly RUN_DIR="$STACK_HOME/run"
readonly LOG_DIR="$STACK_HOME/log"
readonly CACHE_DIR="$STACK_HOME/cache"
readonly TIMEOUT="${FLEET_STACK_TIMEOUT:-180}"

readonly KAFKA_VERSION="${FLEET_STACK_KAFKA_VERSION:-4.4.0}"
readonly KAFKA_HEAP="${FLEET_STACK_KAFKA_HEAP:-768m}"
readonly KAFKA_GC="${FLEET_STACK_KAFKA_GC:--XX:+UseZGC}"
readonly KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
readonly KAFKA_BASE_PORT=9092
readonly KAFKA_CONTROLLER_BASE_PORT=19092
readonly KAFKA_STOP_TIMEOUT=60
KAFKA_BROKER_COUNT="${FLEET_STACK_KAFKA_BROKERS:-1}"

readonly RABBIT_HOST=127.0.0.1
readonly RABBIT_PORT=5672
readonly RABBIT_MGMT_PORT=15672
readonly RABBIT_ETC=/etc/rabbitmq
readonly RABBIT_MARKER="$RUN_DIR/rabbitmq.started"

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_CLUSTER=main
readonly PG_USER=fleet
readonly PG_PASSWORD=fleet
readonly PG_DB=fleet
readonly PG_MARKER="$RUN_DIR/postgresql.started"

readonly BIN_DIR="$STACK_HOME/bin"

readonly MAILPIT_VERSION=v1.33.1
readonly MAILPIT_BIN="$BIN_DIR/mailpit"
readonly MAILPIT_SMTP_PORT=1025
readonly MAILPIT_HTTP_PORT=8025
readonly MAILPIT_URL="http://127.0.0.1:$MAILPIT_HTTP_PORT"
readonly MAILPIT_PIDFILE="$RUN_DIR/mailpit.pid"

readonly JAEGER_VERSION=v1.76.0
readonly JAEGER_BIN="$BIN_DIR/jaeger"
readonly JAEGER_OTLP_GRPC_PORT=4317
readonly JAEGER_OTLP_HTTP_PORT=4318
readonly JAEGER_QUERY_PORT=16686
readonly JAEGER_QUERY_URL="http://127.0.0.1:$JAEGER_QUERY_PORT"
readonly JAEGER_PIDFILE="$RUN_DIR/jaeger.pid"

readonly SLURM_HOME="$STACK_HOME/slurm24"
readonly SLURM_ROOT="$SLURM_HOME/root"
readonly SLURM_SUITE="${FLEET_STACK_SLURM_SUITE:-trixie}"
readonly SLURM_BASE_PKGS=slurmctld,slurmd,slurmrestd,slurm-client,munge,slurm-wlm-jwt-plugin,curl
readonly SLURM_ROOT_PKGS="slurmctld slurmd slurmrestd slurm-client munge slurm-wlm-jwt-plugin mariadb-server slurmdbd"
readonly SLURM_CLUSTERS="${FLEET_STACK_SLURM_CLUSTERS:-frontera vista}"
readonly SLURMCTLD_BASE_PORT=7817
readonly SLURMD_BASE_PORT=7818
readonly SLURMRESTD_BASE_PORT=7820
readonly SLURMDBD_PORT=7819
readonly MARIADB_PORT=3307
readonly SLURMREST_USER=slurmrest
readonly SLURM_JOB_USER=fleetjob
readonly SLURM_ACCOUNT=fleet
readonly SLURM_TOKEN_LIFESPAN="${FLEET_STACK_SLURM_TOKEN_LIFESPAN:-86400}"
SLURMDBD_DB_PASSWORD=""

readonly DEFAULT_COMPONENTS=kafka,rabbitmq,postgresql,mailpit,jaeger,slurm,chromium
COMPONENTS="${FLEET_STACK_COMPONENTS:-$DEFAULT_COMPONENTS}"
APT_UPDATED=0

# ---------------------------------------------------------------------------------------
# helpers

say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
	printf 'stack.sh: error: %s\n' "$*" >&2
	exit 1
}

# port_open PORT [HOST]: true when something accepts a TCP connection.
port_open() {
	local port=$1 host=${2:-127.0.0.1}
	timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

# wait_port PORT SECONDS [PID]: wait for the port; fail early when PID dies.
wait_port() {
	local port=$1 secs=$2 pid=${3:-} deadline
	deadline=$((SECONDS + secs))
	while ((SECONDS < deadline)); do
		port_open "$port" && return 0
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			return 2
		fi
		sleep 1
	done
	return 1
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# pid_matches PID WORD: the process is alive and its command line contains WORD.
pid_matches() {
	local pid=$1 word=$2
	pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$word"
}

read_file() { if [[ -f $1 ]]; then cat "$1"; fi; }

# shell-quoted export line; single quotes keep globs such as libs/* intact under eval.
emit_export() { printf "export %s='%s'\n" "$1" "$2"; }

has_component() { [[ ",$COMPONENTS," == *",$1,"* ]]; }

apt_install() {
	((EUID == 0)) || die "installing $* needs root (apt-get)"
	if ((APT_UPDATED == 0)); then
		say "apt-get update"
		apt-get update >&2
		APT_UPDATED=1
	fi
	say "installing $*"
	# 9>&-: a service that a package's maintainer scripts start must not inherit the state lock.
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 9>&-
}

# need_pkgs PKG...: install the Debian packages that are not installed yet.
need_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

lock_state() {
	mkdir -p "$RUN_DIR" "$LOG_DIR" "$CACHE_DIR"
	exec 9>"$RUN_DIR/.lock"
	if ! flock -n 9; then
		say "waiting for another stack.sh to finish"
		flock -w 900 9 || die "could not lock $RUN_DIR/.lock"
	fi
}

# ---------------------------------------------------------------------------------------
# kafka

kafka_classpath() { printf '%s/*' "$KAFKA_LIBS"; }
kafka_port() { echo $((KAFKA_BASE_PORT + $1)); }
kafka_controller_port() { echo $((KAFKA_CONTROLLER_BASE_PORT + $1)); }
kafka_layout_dir() { echo "$STACK_HOME/kafka/brokers-$1"; }
kafka_pidfile() { echo "$RUN_DIR/kafka-$1.pid"; }
kafka_layout_file() { echo "$RUN_DIR/kafka.layout"; }

# Broker count recorded by the last start, or empty.
kafka_running_layout() { read_file "$(kafka_layout_file)"; }

kafka_bootstrap() {
	local n=$1 i list=()
	for ((i = 0; i < n; i++)); do list+=("127.0.0.1:$(kafka_port "$i")"); done
	local IFS=,
	echo "${list[*]}"
}

# Broker count whose ports currently answer (from the recorded layout, else probing 9092).
kafka_live_count() {
	local n i live=0
	n=$(kafka_running_layout)
	[[ -n $n ]] || n=1
	for ((i = 0; i < n; i++)); do
		port_open "$(kafka_port "$i")" && live=$((live + 1))
	done
	echo "$live"
}

kafka_tools_log4j() {
	local f="$STACK_HOME/kafka/tools-log4j2.properties"
	if [[ ! -f $f ]]; then
		mkdir -p "$(dirname "$f")"
		cat >"$f" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
	fi
	echo "$f"
}

# kafka_tool MAIN_CLASS ARGS...: run one of the Kafka command-line tools from the jars.
kafka_tool() {
	[[ -f $KAFKA_LIBS/.complete ]] || die "Kafka jars are not installed; run: stack.sh up --components kafka"
	java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \
		-Dlog4j2.configurationFile="$(kafka_tools_log4j)" \
		-cp "$(kafka_classpath)" "$@"
}

# The jar cache is keyed by the pom's content: editing the pom re-resolves the jars.
kafka_pom_stamp() { sha256sum "$SCRIPT_DIR/kafka/pom.xml" | cut -c1-16; }

install_kafka() {
	command -v java >/dev/null 2>&1 || need_pkgs openjdk-17-jre-headless
	local stamp
	stamp=$(kafka_pom_stamp)
	if [[ -f $KAFKA_LIBS/.complete && $(<"$KAFKA_LIBS/.complete") == "$stamp" ]]; then
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || need_pkgs maven
	say "resolving Kafka $KAFKA_VERSION jars from Maven Central"
	rm -rf "$KAFKA_LIBS"
	mkdir -p "$KAFKA_LIBS"
	# -B: plain "Downloading/Downloaded" lines instead of a progress bar; output to stderr.
	(cd "$SCRIPT_DIR/kafka" && mvn -B -Dstyle.color=never -f pom.xml \
		-Dkafka.version="$KAFKA_VERSION" \
		-DincludeScope=runtime \
		-DoutputDirectory="$KAFKA_LIBS" \
		dependency:copy-dependencies) >&2 ||
		die "mvn could not resolve Kafka $KAFKA_VERSION (see the output above)"
	[[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing in $KAFKA_LIBS"
	echo "$stamp" >"$KAFKA_LIBS/.complete"
	note "$(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

# kafka_write_config N I: server.properties and log4j2 config for broker I of an N-broker cluster.
kafka_write_config() {
	local n=$1 i=$2 dir rf isr voters="" j
	dir="$(kafka_layout_dir "$n")/node-$i"
	mkdir -p "$dir/data" "$LOG_DIR/kafka-$i"
	rf=$((n < 3 ? n : 3))
	isr=$((rf < 2 ? rf : 2))
	for ((j = 0; j < n; j++)); do
		voters+="${voters:+,}$((j + 1))@127.0.0.1:$(kafka_controller_port "$j")"
	done
	cat >"$dir/server.properties" <<EOF
# Generated by tools/stack/stack.sh: broker $i of a $n-broker KRaft cluster (combined mode).
process.roles=broker,controller
node.id=$((i + 1))
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$i"),CONTROLLER://127.0.0.1:$(kafka_controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# Topics come from the fleet's topic catalogue tool (create-or-verify), never implicitly.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
	cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $LOG_DIR/kafka-$i/server.log
appender.file.filePattern = $LOG_DIR/kafka-$i/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

# kafka_format N I: format the storage of broker I once, with the layout's cluster id.
kafka_format() {
	local n=$1 i=$2 layout dir cid
	layout=$(kafka_layout_dir "$n")
	dir="$layout/node-$i"
	[[ -f $dir/data/meta.properties ]] && return 0
	if [[ ! -s $layout/cluster.id ]]; then
		kafka_tool kafka.tools.StorageTool random-uuid >"$layout/cluster.id.tmp"
		mv "$layout/cluster.id.tmp" "$layout/cluster.id"
	fi
	cid=$(<"$layout/cluster.id")
	say "formatting Kafka storage for broker $i (cluster id $cid)"
	kafka_tool kafka.tools.StorageTool format --cluster-id "$cid" \
		--config "$dir/server.properties" --ignore-formatted >"$LOG_DIR/kafka-$i/format.log" 2>&1 ||
		die "formatting $dir/data failed; see $LOG_DIR/kafka-$i/format.log"
}

start_kafka() {
	local n=$KAFKA_BROKER_COUNT running i port pidfile pid dir started=0
	running=$(kafka_running_layout)
	if [[ -n $running && $running != "$n" ]]; then
		for ((i = 0; i < running; i++)); do
			if pid_matches "$(read_file "$(kafka_pidfile "$i")")" kafka.Kafka; then
				die "Kafka is running with $running broker(s); run 'stack.sh down --components kafka' before 'up --kafka-brokers $n'"
			fi
		done
	fi
	for ((i = 0; i < n; i++)); do
		port=$(kafka_port "$i")
		pidfile=$(kafka_pidfile "$i")
		if port_open "$port"; then
			if pid_matches "$(read_file "$pidfile")" kafka.Kafka; then
				note "Kafka broker $i already running on 127.0.0.1:$port (pid $(<"$pidfile"))"
			else
				note "127.0.0.1:$port already answers (not started by this script); leaving it alone"
			fi
			continue
		fi
		kafka_write_config "$n" "$i"
		kafka_format "$n" "$i"
		dir="$(kafka_layout_dir "$n")/node-$i"
		say "starting Kafka broker $i on 127.0.0.1:$port (log $LOG_DIR/kafka-$i/server.log)"
		# setsid: own session, so the broker outlives the shell that ran `up`; 9>&-: no state lock.
		# shellcheck disable=SC2086 # KAFKA_GC holds several options
		setsid java -Xmx"$KAFKA_HEAP" -Xms256m $KAFKA_GC \
			-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
			-Dkafka.logs.dir="$LOG_DIR/kafka-$i" \
			-Dlog4j2.configurationFile="$dir/log4j2.properties" \
			-cp "$(kafka_classpath)" kafka.Kafka "$dir/server.properties" \
			>"$LOG_DIR/kafka-$i/stdout.log" 2>&1 </dev/null 9>&- &
		pid=$!
		echo "$pid" >"$pidfile"
		started=1
	done
	echo "$n" >"$(kafka_layout_file)"
	if ((started)); then
		KAFKA_FRESH=1
	fi
}

ready_kafka() {
	local n=$KAFKA_BROKER_COUNT i port pid rc deadline
	for ((i = 0; i < n; i++)); do
		port=$(kafka_port "$i")
		pid=$(read_file "$(kafka_pidfile "$i")")
		pid_alive "$pid" || pid=""
		rc=0
		wait_port "$port" "$TIMEOUT" "$pid" || rc=$?
		if ((rc == 2)); then
			tail -n 30 "$LOG_DIR/kafka-$i/server.log" "$LOG_DIR/kafka-$i/stdout.log" >&2 2>/dev/null || true
			die "Kafka broker $i exited during startup; see $LOG_DIR/kafka-$i/server.log"
		elif ((rc != 0)); then
			die "Kafka broker $i not listening on 127.0.0.1:$port after ${TIMEOUT}s; see $LOG_DIR/kafka-$i/server.log"
		fi
	done
	# Only a broker this run started needs the full check (a JVM round trip, a few seconds).
	[[ ${KAFKA_FRESH:-0} == 1 ]] || return 0
	say "waiting for Kafka to serve metadata"
	deadline=$((SECONDS + TIMEOUT))
	until kafka_tool org.apache.kafka.tools.TopicCommand \
		--bootstrap-server "$(kafka_bootstrap "$n")" --list >/dev/null 2>"$RUN_DIR/kafka-ready.err"; do
		if ((SECONDS >= deadline)); then
			cat "$RUN_DIR/kafka-ready.err" >&2
			die "Kafka did not answer a topic listing within ${TIMEOUT}s; see $LOG_DIR/kafka-0/server.log"
		fi
		sleep 2
	done
	note "Kafka $KAFKA_VERSION ready at $(kafka_bootstrap "$n")"
}

stop_kafka() {
	local pidfile i pid pids=() deadline
	for pidfile in "$RUN_DIR"/kafka-*.pid; do
		[[ -f $pidfile ]] || continue
		pid=$(<"$pidfile")
		if pid_matches "$pid" kafka.Kafka; then
			pids+=("$pid")
		else
			rm -f "$pidfile"
		fi
	done
	if ((${#pids[@]} == 0)); then
		note "Kafka: nothing started by this script is running"
		rm -f "$(kafka_layout_file)"
		return 0
	fi
	say "stopping Kafka (pids ${pids[*]})"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
	for pid in "${pids[@]}"; do
		while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 1; done
	done
	for pid in "${pids[@]}"; do
		if pid_alive "$pid"; then
			note "Kafka pid $pid still running after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for i in "${pids[@]}"; do
		while pid_alive "$i"; do sleep 0.2; done
	done
	rm -f "$RUN_DIR"/kafka-*.pid "$(kafka_layout_file)"
}

status_kafka() {
	local n i port pid by
	n=$(kafka_running_layout)
	[[ -n $n ]] || n=1
	for ((i = 0; i < n; i++)); do
		port=$(kafka_port "$i")
		pid=$(read_file "$(kafka_pidfile "$i")")
		by="-"
		if pid_matches "$pid" kafka.Kafka; then by="stack.sh (pid $pid)"; fi
		if port_open "$port"; then
			[[ $by != "-" ]] || by="external"
			printf '%-17s %-5s %-22s %s\n' "kafka-$i" up "127.0.0.1:$port" "$by"
		else
			printf '%-17s %-5s %-22s %s\n' "kafka-$i" down "127.0.0.1:$port" "$by"
		fi
	done
}

env_kafka() {
	local live n
	live=$(kafka_live_count)
	((live > 0)) || return 0
	n=$(kafka_running_layout)
	[[ -n $n ]] || n=1
	emit_export KAFKA_BROKERS "$(kafka_bootstrap "$n")"
	if [[ -f $KAFKA_LIBS/.complete ]]; then
		emit_export KAFKA_CLASSPATH "$(kafka_classpath)"
	fi
}

logs_kafka() {
	local n i
	n=$(kafka_running_layout)
	for ((i = 0; i < ${n:-1}; i++)); do
		if [[ -f $LOG_DIR/kafka-$i/server.log ]]; then echo "$LOG_DIR/kafka-$i/server.log"; fi
	done
}

# ---------------------------------------------------------------------------------------
# rabbitmq

rabbit_running() {
	port_open "$RABBIT_PORT" && return 0
	command -v rabbitmq-diagnostics >/dev/null 2>&1 || return 1
	timeout 30 rabbitmq-diagnostics -q ping >/dev/null 2>&1
}

rabbit_log() {
	local f newest=""
	for f in /var/log/rabbitmq/rabbit@*.log; do
		[[ -f $f && $f != *-sasl.log ]] || continue
		[[ -z $newest || $f -nt $newest ]] && newest=$f
	done
	echo "${newest:-/var/log/rabbitmq/}"
}

# The node's OS pid as recorded in the marker when this script started it, or empty.
rabbit_marker_pid() { [[ -f $RABBIT_MARKER ]] && sed -n 's/^pid=//p' "$RABBIT_MARKER"; }

# rabbit_ours: the running node is the one this script started (marker pid still alive).
rabbit_ours() {
	local pid
	[[ -f $RABBIT_MARKER ]] || return 1
	pid=$(rabbit_marker_pid)
	[[ -z $pid ]] || pid_matches "$pid" beam
}

rabbit_record_pid() {
	local pid
	pid=$(timeout 30 rabbitmqctl -q eval 'os:getpid().' 2>/dev/null | tr -dc '0-9' || true)
	[[ -n $pid ]] && echo "pid=$pid" >>"$RABBIT_MARKER"
	return 0
}

install_rabbitmq() {
	dpkg -s rabbitmq-server >/dev/null 2>&1 && return 0
	local before=0
	rabbit_running && before=1
	# Configure first: a node that the package's maintainer scripts start uses it as well.
	rabbit_configure
	need_pkgs rabbitmq-server
	# The package's maintainer scripts may have started the node (init scripts / systemd).
	if ((before == 0)) && rabbit_running; then
		note "the rabbitmq-server package started the node during installation"
		echo "started=$(date -u +%FT%TZ)" >"$RABBIT_MARKER"
	fi
}

# rabbit_configure: management plugin enabled and loopback listeners, written before a start.
rabbit_configure() {
	mkdir -p "$RABBIT_ETC"
	if [[ ! -f $RABBIT_ETC/enabled_plugins ]]; then
		echo '[rabbitmq_management].' >"$RABBIT_ETC/enabled_plugins"
	elif ! grep -q rabbitmq_management "$RABBIT_ETC/enabled_plugins" &&
		command -v rabbitmq-plugins >/dev/null 2>&1; then
		rabbitmq-plugins enable --offline rabbitmq_management >&2
	fi
	if [[ ! -f $RABBIT_ETC/rabbitmq.conf ]]; then
		cat >"$RABBIT_ETC/rabbitmq.conf" <<EOF
# Written by the fleet's tools/stack/stack.sh: loopback only, guest/guest.
listeners.tcp.default = $RABBIT_HOST:$RABBIT_PORT
management.tcp.ip = $RABBIT_HOST
management.tcp.port = $RABBIT_MGMT_PORT
loopback_users.guest = true
EOF
	fi
	chmod 644 "$RABBIT_ETC/enabled_plugins" "$RABBIT_ETC/rabbitmq.conf"
}

start_rabbitmq() {
	if rabbit_running; then
		if rabbit_ours; then
			note "RabbitMQ already running (started by this script)"
		else
			note "RabbitMQ already running (not started by this script); leaving it alone"
		fi
		if ! port_open "$RABBIT_MGMT_PORT"; then
			say "enabling the RabbitMQ management plugin"
			rabbitmq-plugins enable rabbitmq_management >&2 9>&-
		fi
		return 0
	fi
	rm -f "$RABBIT_MARKER"
	rabbit_configure
	say "starting RabbitMQ on $RABBIT_HOST:$RABBIT_PORT (log in /var/log/rabbitmq/)"
	rabbitmq-server -detached >"$LOG_DIR/rabbitmq-start.log" 2>&1 </dev/null 9>&- ||
		die "rabbitmq-server -detached failed; see $LOG_DIR/rabbitmq-start.log and /var/log/rabbitmq/"
	echo "started=$(date -u +%FT%TZ)" >"$RABBIT_MARKER"
}

ready_rabbitmq() {
	local deadline
	deadline=$((SECONDS + TIMEOUT))
	until timeout 60 rabbitmqctl -q await_startup --timeout 30 >/dev/null 2>"$RUN_DIR/rabbitmq-ready.err"; do
		if ((SECONDS >= deadline)); then
			cat "$RUN_DIR/rabbitmq-ready.err" >&2
			die "RabbitMQ did not start within ${TIMEOUT}s; see $(rabbit_log)"
		fi
		sleep 2
	done
	wait_port "$RABBIT_PORT" 30 || die "RabbitMQ runs but 127.0.0.1:$RABBIT_PORT does not answer; see $(rabbit_log)"
	wait_port "$RABBIT_MGMT_PORT" 60 ||
		die "RabbitMQ management API not listening on 127.0.0.1:$RABBIT_MGMT_PORT; see $(rabbit_log)"
	if [[ -f $RABBIT_MARKER && -z $(rabbit_marker_pid) ]]; then rabbit_record_pid; fi
	note "RabbitMQ ready at amqp://$RABBIT_HOST:$RABBIT_PORT/ (management http://$RABBIT_HOST:$RABBIT_MGMT_PORT)"
}

stop_rabbitmq() {
	if ! rabbit_ours; then
		rm -f "$RABBIT_MARKER"
		note "RabbitMQ: not started by this script; leaving it alone"
		return 0
	fi
	if rabbit_running; then
		say "stopping RabbitMQ"
		rabbitmqctl stop >&2 || die "rabbitmqctl stop failed; see $(rabbit_log)"
		wait_closed "$RABBIT_PORT" 60 || note "127.0.0.1:$RABBIT_PORT still answers"
		# epmd refuses to exit while any Erlang node is still registered.
		epmd -kill >/dev/null 2>&1 || true
	fi
	rm -f "$RABBIT_MARKER"
}

wait_closed() {
	local port=$1 deadline
	deadline=$((SECONDS + $2))
	while port_open "$port"; do
		((SECONDS < deadline)) || return 1
		sleep 1
	done
}

status_rabbitmq() {
	local by="-" state=down
	port_open "$RABBIT_PORT" && state=up
	if [[ $state == up ]] && rabbit_ours; then by="stack.sh (pid $(rabbit_marker_pid))"; elif [[ $state == up ]]; then by="external"; fi
	printf '%-17s %-5s %-22s %s\n' rabbitmq "$state" "$RABBIT_HOST:$RABBIT_PORT" "$by"
	state=down
	port_open "$RABBIT_MGMT_PORT" && state=up
	printf '%-17s %-5s %-22s %s\n' rabbitmq-mgmt "$state" "$RABBIT_HOST:$RABBIT_MGMT_PORT" "$by"
}

env_rabbitmq() {
	port_open "$RABBIT_PORT" || return 0
	emit_export AMQP_URL "amqp://guest:guest@$RABBIT_HOST:$RABBIT_PORT/"
	if port_open "$RABBIT_MGMT_PORT"; then
		emit_export RABBITMQ_MGMT_URL "http://guest:guest@$RABBIT_HOST:$RABBIT_MGMT_PORT"
	fi
}

logs_rabbitmq() {
	local f
	f=$(rabbit_log)
	[[ -f $f ]] && echo "$f"
	return 0
}

# ---------------------------------------------------------------------------------------
# postgresql

# Newest PostgreSQL major version installed under /usr/lib/postgresql, or empty.
pg_version() {
	local d best=""
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x $d ]] || continue
		d=${d#/usr/lib/postgresql/}
		d=${d%%/*}
		if [[ -z $best ]] || ((d > best)); then best=$d; fi
	done
	echo "$best"
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

# The postmaster pid of the packaged cluster, from its postmaster.pid, or empty.
pg_pid() {
	local v
	v=$(pg_version)
	[[ -n $v ]] || return 0
	head -n1 "/var/lib/postgresql/$v/$PG_CLUSTER/postmaster.pid" 2>/dev/null || true
}

pg_ours() { [[ -f $PG_MARKER ]] && pid_matches "$(pg_pid)" postgres; }

pg_log() { echo "/var/log/postgresql/postgresql-$(pg_version)-$PG_CLUSTER.log"; }

# pg_psql SQL...: run SQL as the postgres superuser over the local socket.
pg_psql() {
	runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres -Atc "$1" 9>&-
}

install_postgresql() {
	local before=0
	if dpkg -s postgresql >/dev/null 2>&1 && [[ -n $(pg_version) ]]; then
		:
	else
		pg_ready && before=1
		need_pkgs postgresql
		# Without a policy-rc.d that forbids it, the package starts its cluster on installation.
		if ((before == 0)) && pg_ready; then
			note "the postgresql package started its cluster during installation"
			echo "started=$(date -u +%FT%TZ)" >"$PG_MARKER"
		fi
	fi
	local v
	v=$(pg_version)
	[[ -n $v ]] || die "no PostgreSQL server under /usr/lib/postgresql after installing the package"
	# The package creates the cluster in its postinst; a machine where it was dropped gets a new one.
	if [[ ! -f /etc/postgresql/$v/$PG_CLUSTER/postgresql.conf ]]; then
		say "creating PostgreSQL $v cluster $PG_CLUSTER"
		pg_createcluster "$v" "$PG_CLUSTER" -p "$PG_PORT" >&2 9>&-
	fi
	pg_configure "$v"
}

# pg_configure VERSION: loopback listener through the cluster's conf.d (restart to apply).
pg_configure() {
	local v=$1 f
	f=/etc/postgresql/$v/$PG_CLUSTER/conf.d/fleet-stack.conf
	local want="# Written by the fleet's tools/stack/stack.sh: loopback only.
listen_addresses = '$PG_HOST'
port = $PG_PORT
max_connections = 200"
	if [[ ! -f $f || $(<"$f") != "$want" ]]; then
		mkdir -p "$(dirname "$f")"
		printf '%s\n' "$want" >"$f"
		chown postgres:postgres "$f" 2>/dev/null || true
		PG_RECONFIGURED=1
	fi
}

start_postgresql() {
	local v
	v=$(pg_version)
	if pg_ready; then
		if pg_ours; then
			note "PostgreSQL already running (started by this script)"
			if [[ ${PG_RECONFIGURED:-0} == 1 ]]; then
				say "restarting PostgreSQL to apply $PG_HOST:$PG_PORT"
				pg_ctlcluster --skip-systemctl-redirect "$v" "$PG_CLUSTER" restart -m fast >&2 9>&-
			fi
		else
			note "PostgreSQL already answers on $PG_HOST:$PG_PORT (not started by this script); leaving it alone"
		fi
		return 0
	fi
	# A cluster that runs but does not listen on loopback yet (package defaults): restart ours only.
	if pid_matches "$(pg_pid)" postgres; then
		if [[ -f $PG_MARKER ]]; then
			say "restarting PostgreSQL $v/$PG_CLUSTER to listen on $PG_HOST:$PG_PORT"
			pg_ctlcluster --skip-systemctl-redirect "$v" "$PG_CLUSTER" restart -m fast >&2 9>&-
			return 0
		fi
		die "PostgreSQL $v/$PG_CLUSTER runs (not started by this script) but $PG_HOST:$PG_PORT does not answer"
	fi
	say "starting PostgreSQL $v/$PG_CLUSTER on $PG_HOST:$PG_PORT (log $(pg_log))"
	# --skip-systemctl-redirect: start the postmaster directly (no systemd in containers, and
	# policy-rc.d may forbid service starts); pg_ctlcluster drops to the cluster's owner.
	pg_ctlcluster --skip-systemctl-redirect "$v" "$PG_CLUSTER" start >"$LOG_DIR/postgresql-start.log" 2>&1 </dev/null 9>&- || {
		cat "$LOG_DIR/postgresql-start.log" >&2
		tail -n 20 "$(pg_log)" >&2 2>/dev/null || true
		die "pg_ctlcluster $v $PG_CLUSTER start failed; see $(pg_log)"
	}
	echo "started=$(date -u +%FT%TZ)" >"$PG_MARKER"
}

ready_postgresql() {
	local deadline
	deadline=$((SECONDS + TIMEOUT))
	until pg_ready; do
		((SECONDS < deadline)) || die "PostgreSQL not ready on $PG_HOST:$PG_PORT after ${TIMEOUT}s; see $(pg_log)"
		sleep 1
	done
	# Role and database, idempotently; the password is reset so a changed one heals.
	local have
	have=$(pg_psql "SELECT (SELECT count(*) FROM pg_roles WHERE rolname='$PG_USER' AND rolcreatedb AND rolcanlogin)
		|| ',' || (SELECT count(*) FROM pg_database WHERE datname='$PG_DB')") ||
		die "psql as postgres failed; see $(pg_log)"
	if [[ $have != "1,1" ]]; then
		say "creating PostgreSQL role $PG_USER and database $PG_DB"
		pg_psql "DO \$\$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
				CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
			ELSE
				ALTER ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
			END IF;
		END \$\$;" >/dev/null
		if [[ -z $(pg_psql "SELECT 1 FROM pg_database WHERE datname='$PG_DB'") ]]; then
			pg_psql "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
		fi
	fi
	note "PostgreSQL $(pg_version) ready at $(pg_url "$PG_DB")"
}

pg_url() { printf 'postgres://%s:%s@%s:%s/%s?sslmode=disable' "$PG_USER" "$PG_PASSWORD" "$PG_HOST" "$PG_PORT" "$1"; }

stop_postgresql() {
	local v
	v=$(pg_version)
	if ! pg_ours; then
		rm -f "$PG_MARKER"
		note "PostgreSQL: not started by this script; leaving it alone"
		return 0
	fi
	say "stopping PostgreSQL $v/$PG_CLUSTER"
	pg_ctlcluster --skip-systemctl-redirect "$v" "$PG_CLUSTER" stop -m fast >&2 9>&- ||
		die "pg_ctlcluster $v $PG_CLUSTER stop failed; see $(pg_log)"
	rm -f "$PG_MARKER"
}

status_postgresql() {
	local state=down by="-"
	pg_ready && state=up
	if [[ $state == up ]] && pg_ours; then by="stack.sh (pid $(pg_pid))"; elif [[ $state == up ]]; then by="external"; fi
	printf '%-17s %-5s %-22s %s\n' postgresql "$state" "$PG_HOST:$PG_PORT" "$by"
}

env_postgresql() {
	pg_ready || return 0
	emit_export DATABASE_URL_POSTGRES "$(pg_url "$PG_DB")"
}

logs_postgresql() {
	local f
	f=$(pg_log)
	[[ -f $f ]] && echo "$f"
	return 0
}

# pg_fresh_db [NAME]: create an empty database owned by the fleet role and print its URL.
pg_fresh_db() {
	local name=${1:-fleet_test_$(date +%s)_$$_$RANDOM}
	[[ $name =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "database name must match [a-z_][a-z0-9_]*: $name"
	pg_ready || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT; run: stack.sh up --components postgresql"
	PGPASSWORD=$PG_PASSWORD psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
		-c "CREATE DATABASE $name" >&2 || die "CREATE DATABASE $name failed"
	pg_url "$name"
	echo
}

# ---------------------------------------------------------------------------------------
# Go tools (mailpit, jaeger): built once into $BIN_DIR, kept across runs

go_cmd() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		echo /usr/local/go/bin/go
	else
		die "the go command is needed to build $1 (Go 1.26 is expected on PATH or in /usr/local/go/bin)"
	fi
}

# go_mod_version BINARY MODULE: the version of MODULE that BINARY was built from, or empty.
go_mod_version() {
	local gobin
	[[ -x $1 ]] || return 0
	gobin=$(go_cmd "$1")
	"$gobin" version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3; exit }'
}

# go_progress LOGFILE: copy the build's output to LOGFILE and show a line now and then.
go_progress() {
	awk -v out="$1" '
		{ print > out; fflush(out); n++ }
		/^go: downloading/ { d++; if (d % 40 == 1) printf "    %s\n", $0 > "/dev/stderr"; next }
		/^(go: |#|[^ ]+\.go:)/ { printf "    %s\n", $0 > "/dev/stderr"; next }
		n % 100 == 0 { printf "    ... %d packages built (%s)\n", n - d, $0 > "/dev/stderr" }
		END { printf "    %d lines of build output in %s\n", n, out > "/dev/stderr" }'
}

# start_daemon NAME PIDFILE LOG CMD...: start CMD in its own session, record its pid.
start_daemon() {
	local name=$1 pidfile=$2 log=$3
	shift 3
	setsid "$@" >>"$log" 2>&1 </dev/null 9>&- &
	echo $! >"$pidfile"
	note "$name started (pid $!, log $log)"
}

# stop_pidfile NAME PIDFILE WORD SECONDS: TERM the recorded process when it still is WORD.
stop_pidfile() {
	local name=$1 pidfile=$2 word=$3 secs=$4 pid deadline
	pid=$(read_file "$pidfile")
	if ! pid_matches "$pid" "$word"; then
		rm -f "$pidfile"
		note "$name: nothing started by this script is running"
		return 0
	fi
	say "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + secs))
	while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
	if pid_alive "$pid"; then
		note "$name pid $pid still running after ${secs}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		while pid_alive "$pid"; do sleep 0.2; done
	fi
	rm -f "$pidfile"
}

# http_ok URL: the URL answers 2xx.
http_ok() { curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null; }

# wait_http NAME URL PIDFILE LOG: wait until URL answers; fail early when the process dies.
wait_http() {
	local name=$1 url=$2 pid log=$4 deadline
	pid=$(read_file "$3")
	deadline=$((SECONDS + TIMEOUT))
	until http_ok "$url"; do
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			tail -n 30 "$log" >&2 2>/dev/null || true
			die "$name exited during startup; see $log"
		fi
		((SECONDS < deadline)) || die "$name did not answer $url within ${TIMEOUT}s; see $log"
		sleep 0.5
	done
}

# ---------------------------------------------------------------------------------------
# mailpit

install_mailpit() {
	command -v curl >/dev/null 2>&1 || need_pkgs curl
	local have
	have=$(go_mod_version "$MAILPIT_BIN" github.com/axllent/mailpit)
	[[ $have == "$MAILPIT_VERSION" ]] && return 0
	local gobin
	gobin=$(go_cmd mailpit)
	say "building mailpit $MAILPIT_VERSION into $BIN_DIR (go install; a minute or two the first time)"
	mkdir -p "$BIN_DIR"
	(cd "$CACHE_DIR" && GOWORK=off GOBIN="$BIN_DIR" nice -n 10 "$gobin" install -v \
		"github.com/axllent/mailpit@$MAILPIT_VERSION" 2>&1 9>&-) | go_progress "$LOG_DIR/mailpit-build.log" ||
		die "go install github.com/axllent/mailpit@$MAILPIT_VERSION failed; see $LOG_DIR/mailpit-build.log"
	have=$(go_mod_version "$MAILPIT_BIN" github.com/axllent/mailpit)
	[[ $have == "$MAILPIT_VERSION" ]] || die "$MAILPIT_BIN reports version '$have', not $MAILPIT_VERSION"
}

start_mailpit() {
	if http_ok "$MAILPIT_URL/api/v1/info"; then
		if pid_matches "$(read_file "$MAILPIT_PIDFILE")" mailpit; then
			note "mailpit already running (pid $(<"$MAILPIT_PIDFILE"))"
		else
			note "$MAILPIT_URL already answers (not started by this script); leaving it alone"
		fi
		return 0
	fi
	port_open "$MAILPIT_SMTP_PORT" && die "127.0.0.1:$MAILPIT_SMTP_PORT is taken by something that is not mailpit"
	mkdir -p "$STACK_HOME/mailpit"
	say "starting mailpit: SMTP 127.0.0.1:$MAILPIT_SMTP_PORT, HTTP $MAILPIT_URL"
	start_daemon mailpit "$MAILPIT_PIDFILE" "$LOG_DIR/mailpit.log" \
		"$MAILPIT_BIN" --smtp "127.0.0.1:$MAILPIT_SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
		--database "$STACK_HOME/mailpit/mailpit.db" --max 0 \
		--smtp-auth-accept-any --smtp-auth-allow-insecure --disable-version-check
}

ready_mailpit() {
	wait_http mailpit "$MAILPIT_URL/api/v1/info" "$MAILPIT_PIDFILE" "$LOG_DIR/mailpit.log"
	wait_port "$MAILPIT_SMTP_PORT" 30 || die "mailpit HTTP answers but SMTP 127.0.0.1:$MAILPIT_SMTP_PORT does not"
	note "mailpit $MAILPIT_VERSION ready: SMTP 127.0.0.1:$MAILPIT_SMTP_PORT, API $MAILPIT_URL"
}

stop_mailpit() { stop_pidfile mailpit "$MAILPIT_PIDFILE" mailpit 20; }

status_mailpit() {
	local by="-" pid state=down
	pid=$(read_file "$MAILPIT_PIDFILE")
	pid_matches "$pid" mailpit && by="stack.sh (pid $pid)"
	port_open "$MAILPIT_SMTP_PORT" && state=up
	[[ $state == down || $by != "-" ]] || by=external
	printf '%-17s %-5s %-22s %s\n' mailpit-smtp "$state" "127.0.0.1:$MAILPIT_SMTP_PORT" "$by"
	state=down
	http_ok "$MAILPIT_URL/api/v1/info" && state=up
	printf '%-17s %-5s %-22s %s\n' mailpit-http "$state" "127.0.0.1:$MAILPIT_HTTP_PORT" "$by"
}

env_mailpit() {
	port_open "$MAILPIT_SMTP_PORT" || return 0
	emit_export SMTP_ADDR "127.0.0.1:$MAILPIT_SMTP_PORT"
	emit_export MAILPIT_URL "$MAILPIT_URL"
}

logs_mailpit() { if [[ -f $LOG_DIR/mailpit.log ]]; then echo "$LOG_DIR/mailpit.log"; fi; }

# ---------------------------------------------------------------------------------------
# chromium (headless browser for the status-page tests; installed only, never started)

readonly CHROMIUM_PATH=/usr/bin/chromium

install_chromium() { need_pkgs chromium; }
start_chromium() { :; }
ready_chromium() { [[ -x $CHROMIUM_PATH ]] || die "$CHROMIUM_PATH is missing after installing chromium"; }
stop_chromium() { :; }

status_chromium() {
	local state=missing
	[[ -x $CHROMIUM_PATH ]] && state=ok
	printf '%-17s %-5s %-22s %s\n' chromium "$state" "$CHROMIUM_PATH" "Debian package"
}

env_chromium() { if [[ -x $CHROMIUM_PATH ]]; then emit_export CHROMIUM_PATH "$CHROMIUM_PATH"; fi; }

logs_chromium() { :; }

# ---------------------------------------------------------------------------------------
# jaeger

# The build is keyed by the tool module (go.mod + go.sum): editing it rebuilds the binary.
jaeger_stamp() { cat "$SCRIPT_DIR/jaeger/go.mod" "$SCRIPT_DIR/jaeger/go.sum" | sha256sum | cut -c1-16; }

install_jaeger() {
	command -v curl >/dev/null 2>&1 || need_pkgs curl
	local stamp
	stamp=$(jaeger_stamp)
	if [[ -x $JAEGER_BIN && -f $BIN_DIR/.jaeger.stamp && $(<"$BIN_DIR/.jaeger.stamp") == "$stamp" ]]; then
		return 0
	fi
	local gobin
	gobin=$(go_cmd jaeger)
	say "building jaeger $JAEGER_VERSION into $BIN_DIR (module tools/stack/jaeger; several minutes on 2 cores the first time)"
	mkdir -p "$BIN_DIR"
	# jaeger's go.mod has a replace directive, so `go install ...@version` refuses it; the tool
	# module pins it instead. -mod=readonly: go.sum is committed.
	(cd "$SCRIPT_DIR/jaeger" && GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 \
		"$gobin" build -v -o "$JAEGER_BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger 2>&1 9>&-) |
		go_progress "$LOG_DIR/jaeger-build.log" ||
		die "building jaeger failed; see $LOG_DIR/jaeger-build.log"
	mv -f "$JAEGER_BIN.tmp" "$JAEGER_BIN"
	echo "$stamp" >"$BIN_DIR/.jaeger.stamp"
	local have
	have=$(go_mod_version "$JAEGER_BIN" github.com/jaegertracing/jaeger)
	[[ $have == "$JAEGER_VERSION" ]] || die "$JAEGER_BIN was built from jaeger '$have', not $JAEGER_VERSION"
}

start_jaeger() {
	if http_ok "$JAEGER_QUERY_URL/api/services"; then
		if pid_matches "$(read_file "$JAEGER_PIDFILE")" jaeger; then
			note "jaeger already running (pid $(<"$JAEGER_PIDFILE"))"
		else
			note "$JAEGER_QUERY_URL already answers (not started by this script); leaving it alone"
		fi
		return 0
	fi
	local p
	for p in $JAEGER_OTLP_GRPC_PORT $JAEGER_OTLP_HTTP_PORT; do
		port_open "$p" && die "127.0.0.1:$p is taken by something that is not this stack's jaeger"
	done
	say "starting jaeger: OTLP gRPC 127.0.0.1:$JAEGER_OTLP_GRPC_PORT, OTLP HTTP 127.0.0.1:$JAEGER_OTLP_HTTP_PORT, UI $JAEGER_QUERY_URL"
	start_daemon jaeger "$JAEGER_PIDFILE" "$LOG_DIR/jaeger.log" \
		"$JAEGER_BIN" --config "file:$SCRIPT_DIR/jaeger/config.yaml"
}

ready_jaeger() {
	wait_http jaeger "$JAEGER_QUERY_URL/api/services" "$JAEGER_PIDFILE" "$LOG_DIR/jaeger.log"
	wait_port "$JAEGER_OTLP_HTTP_PORT" 30 || die "jaeger OTLP HTTP 127.0.0.1:$JAEGER_OTLP_HTTP_PORT does not answer"
	wait_port "$JAEGER_OTLP_GRPC_PORT" 30 || die "jaeger OTLP gRPC 127.0.0.1:$JAEGER_OTLP_GRPC_PORT does not answer"
	note "jaeger $JAEGER_VERSION ready: OTLP http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT, query $JAEGER_QUERY_URL"
}

stop_jaeger() { stop_pidfile jaeger "$JAEGER_PIDFILE" jaeger 20; }

status_jaeger() {
	local by="-" pid state name port
	pid=$(read_file "$JAEGER_PIDFILE")
	pid_matches "$pid" jaeger && by="stack.sh (pid $pid)"
	for name in otlp-grpc:$JAEGER_OTLP_GRPC_PORT otlp-http:$JAEGER_OTLP_HTTP_PORT query:$JAEGER_QUERY_PORT; do
		port=${name#*:}
		state=down
		port_open "$port" && state=up
		printf '%-17s %-5s %-22s %s\n' "jaeger-${name%%:*}" "$state" "127.0.0.1:$port" \
			"$([[ $state == up && $by == - ]] && echo external || echo "$by")"
	done
}

env_jaeger() {
	port_open "$JAEGER_OTLP_HTTP_PORT" || return 0
	emit_export OTEL_EXPORTER_OTLP_ENDPOINT "http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT"
	emit_export OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf
	emit_export JAEGER_QUERY_URL "$JAEGER_QUERY_URL"
}

logs_jaeger() { if [[ -f $LOG_DIR/jaeger.log ]]; then echo "$LOG_DIR/jaeger.log"; fi; }

# ---------------------------------------------------------------------------------------
# slurm (Slurm 24.11 from Debian 13 in its own root file system: munged, MariaDB and slurmdbd
# shared by every cluster; per cluster slurmctld, slurmd and slurmrestd with JWT over HTTP)
#
# Debian 12 ships Slurm 22.05, whose slurmrestd speaks only v0.0.36-v0.0.38 (removed upstream
# in 24.05). Debian 13's packages need its libc, so they live in $SLURM_ROOT (debootstrap) and
# every daemon and client runs with chroot. The network is the host's; /tmp is bind-mounted so
# a job's working directory has the same path inside and outside.

slurm_host() { hostname -s; }

# Memory for the node line: 90% of MemTotal in MB (slurmd rejects a node that claims more).
slurm_mem_mb() { awk '/^MemTotal:/ { printf "%d\n", $2 / 1024 * 0.9 }' /proc/meminfo; }

# Clusters of one's own (`stack.sh slurm-cluster NAME`), recorded in the order they were first
# started so that their ports stay put and status, logs and down include them.
slurm_extra_file() { echo "$SLURM_HOME/extra-clusters"; }
slurm_all_clusters() {
	local c out=$SLURM_CLUSTERS
	for c in $(read_file "$(slurm_extra_file)"); do
		[[ " $SLURM_CLUSTERS " == *" $c "* ]] || out+=" $c"
	done
	echo "$out"
}

# Per-cluster names and ports: cluster I (0-based, in SLURM_CLUSTERS order, then the clusters
# of one's own) uses the base ports + 10*I, so a second cluster is one more word in SLURM_CLUSTERS.
slurm_index() {
	local c i=0
	for c in $(slurm_all_clusters); do
		[[ $c == "$1" ]] && { echo "$i"; return 0; }
		i=$((i + 1))
	done
	die "unknown Slurm cluster '$1' (clusters: $(slurm_all_clusters))"
}
slurmctld_port() { echo $((SLURMCTLD_BASE_PORT + 10 * $(slurm_index "$1"))); }
slurmd_port() { echo $((SLURMD_BASE_PORT + 10 * $(slurm_index "$1"))); }
slurmrestd_port() { echo $((SLURMRESTD_BASE_PORT + 10 * $(slurm_index "$1"))); }
slurm_first_cluster() { set -- $SLURM_CLUSTERS; echo "$1"; }
# Paths inside the root.
slurm_conf_path() { echo "/etc/slurm/$1/slurm.conf"; }
slurm_pidfile() { echo "$RUN_DIR/slurm24-$1.pid"; }
slurm_bin_dir() { echo "$SLURM_HOME/bin/$1"; }

# in_root CMD...: run a command of the root file system.
in_root() { chroot "$SLURM_ROOT" "$@"; }

# in_cluster CLUSTER CMD...: run a Slurm client of the root against CLUSTER (bounded in time,
# stdin closed: sacctmgr reads commands from stdin when its arguments do not parse).
in_cluster() {
	local c=$1
	shift
	timeout 60 chroot "$SLURM_ROOT" /usr/bin/env SLURM_CONF="$(slurm_conf_path "$c")" "$@" </dev/null
}

# debian_mirror: the Debian archive the host's own apt sources use (deb822 .sources files or
# one-line sources.list), without the security archive; deb.debian.org when none is found.
debian_mirror() {
	local f url=""
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		url=$(awk '
			/^[[:space:]]*$/ { if (uri != "" && suites !~ /-security/) { print uri; exit } uri = ""; suites = ""; next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { suites = $0 }
			END { if (uri != "" && suites !~ /-security/) print uri }' "$f" | grep -m1 '/debian/\{0,1\}$' || true)
		[[ -n $url ]] && break
	done
	if [[ -z $url && -f /etc/apt/sources.list ]]; then
		url=$(awk '$1 == "deb" && $2 !~ /^\[/ && $3 !~ /-security/ && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list)
	fi
	printf '%s\n' "${url:-http://deb.debian.org/debian}"
}

# slurm_mount: /proc, /dev, /sys and /tmp of the host inside the root (once).
slurm_mount() {
	local d
	for d in proc dev sys tmp; do
		mkdir -p "$SLURM_ROOT/$d"
		mountpoint -q "$SLURM_ROOT/$d" && continue
		case $d in
		proc) mount -t proc proc "$SLURM_ROOT/proc" ;;
		*) mount --rbind "/$d" "$SLURM_ROOT/$d" && mount --make-rslave "$SLURM_ROOT/$d" ;;
		esac
	done
}

slurm_umount() {
	local d
	for d in tmp sys dev proc; do
		if mountpoint -q "$SLURM_ROOT/$d"; then
			umount -R "$SLURM_ROOT/$d" 2>/dev/null || umount -lR "$SLURM_ROOT/$d" 2>/dev/null || true
		fi
	done
}

# slurm_root_user NAME [HOST_USER]: a user inside the root; with the uid and gid of the host
# user of the same name when the host has one (jobs write files the host reads).
slurm_root_user() {
	local name=$1 uid gid
	in_root getent passwd "$name" >/dev/null 2>&1 && return 0
	if uid=$(id -u "$name" 2>/dev/null); then
		gid=$(id -g "$name")
		in_root getent group "$gid" >/dev/null 2>&1 || in_root groupadd --gid "$gid" "$name"
		in_root useradd --uid "$uid" --gid "$gid" --no-create-home --home-dir /tmp --shell /bin/sh "$name"
	else
		in_root useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$name"
	fi
}

slurm_conf_text() {
	local c=$1 host
	host=$(slurm_host)
	cat <<EOT
# Generated by the fleet's tools/stack/stack.sh (rewritten on \`up\` when it changes).
# Cluster $c: one node on this host, inside $SLURM_ROOT; accounting in slurmdbd.
ClusterName=$c
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(slurmctld_port "$c")
SlurmdPort=$(slurmd_port "$c")
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=/etc/slurm/jwt.key
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Memory is a consumable resource; a job that asks for none gets 1 GB per CPU.
DefMemPerCPU=1024
StateSaveLocation=/var/spool/slurm/$c/state
SlurmdSpoolDir=/var/spool/slurm/$c/spool
SlurmctldPidFile=/run/slurm/$c-slurmctld.pid
SlurmdPidFile=/run/slurm/$c-slurmd.pid
SlurmctldLogFile=/var/log/slurm/$c/slurmctld.log
SlurmdLogFile=/var/log/slurm/$c/slurmd.log
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$SLURMDBD_PORT
# Associations are recorded, not enforced: a job may name any allocation (account).
JobAcctGatherType=jobacct_gather/linux
# Sample every second: the default 30 s leaves short jobs without MaxRSS.
JobAcctGatherFrequency=task=1
# A job above its memory is killed and ends OUT_OF_MEMORY (no cgroups here).
JobAcctGatherParams=OverMemoryKill
# No mail from the scheduler (the fleet notifies users itself).
MailProg=/bin/true
# Finished jobs stay visible to scontrol / slurmrestd for 30 minutes.
MinJobAge=1800
NodeName=$c-n1 NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(slurm_mem_mb) State=UNKNOWN
PartitionName=normal Nodes=$c-n1 Default=YES MaxTime=INFINITE State=UP
EOT
}

slurmdbd_conf_text() {
	cat <<EOT
# Generated by the fleet's tools/stack/stack.sh: one slurmdbd for every cluster of the stack.
AuthType=auth/munge
# slurmrestd passes the caller's JWT on to slurmdbd: one key for every cluster of the stack.
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=/etc/slurm/jwt.key
DbdHost=localhost
DbdPort=$SLURMDBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MARIADB_PORT
StorageUser=slurm
StoragePass=$SLURMDBD_DB_PASSWORD
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
EOT
}

# write_root_file PATH MODE TEXT: write TEXT to PATH inside the root when it differs; true
# when it was written.
write_root_file() {
	local f=$SLURM_ROOT$1 mode=$2 text=$3
	[[ -f $f && $(<"$f") == "$text" ]] && return 1
	mkdir -p "$(dirname "$f")"
	(umask 077 && printf '%s\n' "$text" >"$f.tmp")
	chmod "$mode" "$f.tmp"
	mv -f "$f.tmp" "$f"
}

# slurm_wrappers CLUSTER: $SLURM_HOME/bin/CLUSTER/<tool> runs the root's tool against CLUSTER,
# so that tests and people can call scontrol, sacct, ... of Slurm 24.11 from the host.
slurm_wrappers() {
	local c=$1 dir t
	dir=$(slurm_bin_dir "$c")
	mkdir -p "$dir"
	for t in scontrol squeue sinfo sacct sacctmgr sbatch scancel sstat sreport; do
		cat >"$dir/$t.tmp" <<EOT
#!/bin/sh
# Generated by tools/stack/stack.sh: Slurm 24.11's $t for cluster $c (chroot $SLURM_ROOT).
exec chroot $SLURM_ROOT /usr/bin/env SLURM_CONF=$(slurm_conf_path "$c") /usr/bin/$t "\$@"
EOT
		chmod 755 "$dir/$t.tmp"
		mv -f "$dir/$t.tmp" "$dir/$t"
	done
}

install_slurm() {
	if [[ ! -f $SLURM_ROOT/.fleet-debootstrap ]]; then
		need_pkgs debootstrap
		local mirror t0=$SECONDS
		mirror=$(debian_mirror)
		say "installing Slurm 24.11 (Debian $SLURM_SUITE) into $SLURM_ROOT with debootstrap from $mirror"
		slurm_umount
		rm -rf "$SLURM_ROOT.tmp"
		mkdir -p "$SLURM_HOME"
		debootstrap --variant=minbase --include="$SLURM_BASE_PKGS" "$SLURM_SUITE" "$SLURM_ROOT.tmp" "$mirror" \
			>"$SLURM_HOME/debootstrap.log" 2>&1 || {
			tail -n 20 "$SLURM_HOME/debootstrap.log" >&2
			die "debootstrap of $SLURM_SUITE failed; see $SLURM_HOME/debootstrap.log"
		}
		rm -rf "$SLURM_ROOT"
		mv "$SLURM_ROOT.tmp" "$SLURM_ROOT"
		touch "$SLURM_ROOT/.fleet-debootstrap"
		note "root file system ready in $((SECONDS - t0))s ($(du -sh "$SLURM_ROOT" 2>/dev/null | cut -f1))"
	fi
	slurm_mount
	# The root's hosts file names this host (slurmdbd and MariaDB resolve it).
	write_root_file /etc/hosts 644 "127.0.0.1 localhost
127.0.1.1 $(hostname) $(slurm_host)" || true
	local p missing=()
	for p in $SLURM_ROOT_PKGS; do
		in_root dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if ((${#missing[@]})); then
		say "installing ${missing[*]} inside $SLURM_ROOT"
		# policy-rc.d: the packages' scripts must not start their daemons; stack.sh does.
		printf '#!/bin/sh\nexit 101\n' >"$SLURM_ROOT/usr/sbin/policy-rc.d"
		chmod 755 "$SLURM_ROOT/usr/sbin/policy-rc.d"
		in_root /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update >&2 9>&- ||
			die "apt-get update inside $SLURM_ROOT failed"
		in_root /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			"${missing[@]}" >&2 9>&- || die "installing ${missing[*]} inside $SLURM_ROOT failed"
	fi
	# Users: jobs run as the job user (same uid as on the host, whose tests read its files);
	# slurmrestd refuses to run as root.
	if ! id -u "$SLURM_JOB_USER" >/dev/null 2>&1; then
		say "creating user $SLURM_JOB_USER (jobs submitted through slurmrestd run as this user)"
		useradd --create-home --user-group --shell /bin/bash "$SLURM_JOB_USER"
	fi
	slurm_root_user "$SLURM_JOB_USER"
	slurm_root_user "$SLURMREST_USER"
	if [[ ! -s $SLURM_ROOT/etc/munge/munge.key ]]; then
		say "creating the munge key of $SLURM_ROOT"
		in_root mungekey -c -f -k /etc/munge/munge.key
		in_root chown munge:munge /etc/munge/munge.key
		in_root chmod 400 /etc/munge/munge.key
	fi
	install -d -m 755 "$SLURM_ROOT/run/slurm" "$SLURM_ROOT/var/log/slurm" "$SLURM_ROOT/var/spool/slurm"
	if [[ ! -s $SLURM_HOME/db.password ]]; then
		(umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$SLURM_HOME/db.password")
	fi
	SLURMDBD_DB_PASSWORD=$(<"$SLURM_HOME/db.password")
	if [[ ! -s $SLURM_ROOT/etc/slurm/jwt.key ]]; then
		say "creating the Slurm JWT key of $SLURM_ROOT"
		mkdir -p "$SLURM_ROOT/etc/slurm"
		(umask 077 && head -c 64 /dev/urandom >"$SLURM_ROOT/etc/slurm/jwt.key")
	fi
	chmod 600 "$SLURM_ROOT/etc/slurm/jwt.key"
	write_root_file /etc/slurm/slurmdbd.conf 600 "$(slurmdbd_conf_text)" && SLURMDBD_RECONFIGURED=1
	local c
	for c in $SLURM_CLUSTERS; do install_slurm_cluster "$c"; done
}

# install_slurm_cluster CLUSTER: its directories, slurm.conf (flagged when it changed) and wrappers.
install_slurm_cluster() {
	local c=$1
	# The spool must stay traversable: slurmstepd runs the job's script from it as the job's user.
	install -d -m 755 "$SLURM_ROOT/etc/slurm/$c" "$SLURM_ROOT/var/spool/slurm/$c/spool" "$SLURM_ROOT/var/log/slurm/$c"
	install -d -m 700 "$SLURM_ROOT/var/spool/slurm/$c/state"
	# cgroups are not mounted in the root; without this slurmd 24.11 exits.
	write_root_file "/etc/slurm/$c/cgroup.conf" 644 "CgroupPlugin=disabled" || true
	if write_root_file "$(slurm_conf_path "$c")" 644 "$(slurm_conf_text "$c")"; then
		note "wrote $(slurm_conf_path "$c") in $SLURM_ROOT"
		printf -v "SLURM_RECONFIGURED_${c//[^A-Za-z0-9]/_}" 1
	fi
	slurm_wrappers "$c"
}

# cmd_slurm_cluster NAME: start (idempotently) a Slurm cluster of one's own in the stack's root,
# sharing munged and slurmdbd, for tests that restart or kill its daemons: its ports come after
# the stack's clusters, and the stack's own clusters are never reconfigured or restarted. Prints
# SLURMRESTD_URL_<NAME>, SLURM_BIN_DIR_<NAME>, SLURM_JWT_TOKEN_<NAME> and SLURMCTLD_PIDFILE_<NAME>.
cmd_slurm_cluster() {
	local c=${1:-}
	[[ $c =~ ^[a-z][a-z0-9]{0,15}$ ]] || die "slurm-cluster needs a cluster name of lower-case letters and digits, got '$c'"
	[[ " $SLURM_CLUSTERS " != *" $c "* ]] || die "$c is one of the stack's clusters ($SLURM_CLUSTERS); slurm-cluster starts a cluster of one's own"
	lock_state
	cd /
	[[ -f $SLURM_ROOT/.fleet-debootstrap && -s $SLURM_HOME/db.password && -s $SLURM_ROOT/etc/slurm/jwt.key ]] ||
		die "the stack's Slurm root is not installed; run: stack.sh up --components slurm"
	grep -qx -- "$c" "$(slurm_extra_file)" 2>/dev/null || echo "$c" >>"$(slurm_extra_file)"
	slurm_mount
	install_slurm_cluster "$c"
	start_slurm_shared
	start_slurm_cluster "$c"
	ready_slurm_cluster "$c"
	env_slurm_cluster "$c"
	emit_export "SLURMCTLD_PIDFILE_$(slurm_env_suffix "$c")" "$(slurm_pidfile "$c-slurmctld")"
}

munge24_ok() { in_root /usr/bin/munge -n 2>/dev/null | in_root /usr/bin/unmunge >/dev/null 2>&1; }

mariadb_ok() { in_root mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; }

slurmctld24_ok() { in_cluster "$1" scontrol ping 2>/dev/null | grep -q 'is UP'; }

# slurm_daemon_ours NAME WORD: the pidfile's process is alive and its command line has WORD.
slurm_daemon_ours() { pid_matches "$(read_file "$(slurm_pidfile "$1")")" "$2"; }

# slurm_word CLUSTER DAEMON: what the daemon's command line holds (slurmrestd its address).
slurm_word() {
	if [[ $2 == slurmrestd ]]; then echo "127.0.0.1:$(slurmrestd_port "$1")"; else slurm_conf_path "$1"; fi
}

# wait_until SECONDS PIDFILE LOG WHAT CMD...: poll CMD; fail early when the process dies.
wait_until() {
	local secs=$1 pidfile=$2 log=$3 what=$4 deadline pid
	shift 4
	deadline=$((SECONDS + secs))
	until "$@"; do
		pid=$(read_file "$pidfile")
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			tail -n 30 "$log" >&2 2>/dev/null || true
			die "$what exited during startup; see $log"
		fi
		((SECONDS < deadline)) || die "$what is not ready after ${secs}s; see $log"
		sleep 0.5
	done
}

# slurm_token [LIFESPAN [CLUSTER]]: a JWT for the job user, from the cluster's slurmctld.
slurm_token() {
	local out c=${2:-$(slurm_first_cluster)}
	out=$(timeout 20 chroot "$SLURM_ROOT" /usr/bin/env SLURM_CONF="$(slurm_conf_path "$c")" \
		scontrol token username="$SLURM_JOB_USER" lifespan="${1:-$SLURM_TOKEN_LIFESPAN}" 2>&1) || {
		printf '%s\n' "$out" >&2
		return 1
	}
	out=${out#SLURM_JWT=}
	[[ -n $out ]] || return 1
	printf '%s' "$out"
}

start_slurm_shared() {
	slurm_mount
	SLURMDBD_DB_PASSWORD=$(<"$SLURM_HOME/db.password")
	if munge24_ok; then
		note "munged of $SLURM_ROOT already running"
	else
		say "starting munged in $SLURM_ROOT"
		install -d -m 755 "$SLURM_ROOT/run/munge"
		in_root chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
		start_daemon munged "$(slurm_pidfile munged)" "$LOG_DIR/slurm24-munged.log" \
			chroot --userspec=munge:munge "$SLURM_ROOT" /usr/sbin/munged --foreground
		wait_until 20 "$(slurm_pidfile munged)" "$LOG_DIR/slurm24-munged.log" munged munge24_ok
	fi
	if mariadb_ok; then
		note "MariaDB of $SLURM_ROOT already running on 127.0.0.1:$MARIADB_PORT"
	else
		if [[ ! -d $SLURM_ROOT/var/lib/mysql/mysql ]]; then
			say "initialising MariaDB's data directory in $SLURM_ROOT"
			in_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOG_DIR/slurm24-mariadb-install.log" 2>&1 ||
				die "mariadb-install-db failed; see $LOG_DIR/slurm24-mariadb-install.log"
		fi
		install -d -m 755 "$SLURM_ROOT/run/mysqld"
		in_root chown mysql:mysql /run/mysqld
		say "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
		start_daemon mariadbd "$(slurm_pidfile mariadbd)" "$LOG_DIR/slurm24-mariadbd.log" \
			chroot "$SLURM_ROOT" /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
			--port="$MARIADB_PORT" --socket=/run/mysqld/mysqld.sock --skip-log-bin
		wait_until "$TIMEOUT" "$(slurm_pidfile mariadbd)" "$LOG_DIR/slurm24-mariadbd.log" MariaDB mariadb_ok
	fi
	in_root mariadb --socket=/run/mysqld/mysqld.sock -e "
		CREATE DATABASE IF NOT EXISTS slurm_acct_db;
		CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$SLURMDBD_DB_PASSWORD';
		CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$SLURMDBD_DB_PASSWORD';
		ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$SLURMDBD_DB_PASSWORD';
		ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$SLURMDBD_DB_PASSWORD';
		GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
		GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
		die "creating the accounting database in MariaDB failed"
	if [[ ${SLURMDBD_RECONFIGURED:-0} == 1 ]] && slurm_daemon_ours slurmdbd slurmdbd; then
		note "restarting slurmdbd for the new slurmdbd.conf"
		stop_pidfile slurmdbd "$(slurm_pidfile slurmdbd)" slurmdbd 60
	fi
	if slurm_daemon_ours slurmdbd slurmdbd; then
		note "slurmdbd already running (pid $(<"$(slurm_pidfile slurmdbd)"))"
	else
		say "starting slurmdbd on 127.0.0.1:$SLURMDBD_PORT"
		start_daemon slurmdbd "$(slurm_pidfile slurmdbd)" "$LOG_DIR/slurm24-slurmdbd.out" \
			chroot "$SLURM_ROOT" /usr/sbin/slurmdbd -D
	fi
	wait_until "$TIMEOUT" "$(slurm_pidfile slurmdbd)" "$SLURM_ROOT/var/log/slurm/slurmdbd.log" slurmdbd port_open "$SLURMDBD_PORT"
}

# slurm_associations CLUSTER: the cluster, the account and the job user in slurmdbd (once).
slurm_associations() {
	local c=$1 t0=$SECONDS
	# slurmdbd listens a moment before it answers; sacctmgr fails until then.
	until in_cluster "$c" sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; do
		((SECONDS - t0 < TIMEOUT)) || die "sacctmgr cannot reach slurmdbd after ${TIMEOUT}s; see $SLURM_ROOT/var/log/slurm/slurmdbd.log"
		sleep 0.5
	done
	if ! in_cluster "$c" sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$c"; then
		say "registering cluster $c in slurmdbd"
		in_cluster "$c" sacctmgr -i add cluster "$c" >&2 || die "sacctmgr add cluster $c failed"
		# slurmctld may hold the cluster name of a run without slurmdbd; it must not refuse.
		rm -f "$SLURM_ROOT/var/spool/slurm/$c/state/clustername"
	fi
	if ! in_cluster "$c" sacctmgr -n -P list assoc cluster="$c" account="$SLURM_ACCOUNT" format=account 2>/dev/null | grep -qx "$SLURM_ACCOUNT"; then
		in_cluster "$c" sacctmgr -i add account "$SLURM_ACCOUNT" cluster="$c" description=fleet organization=fleet >&2 ||
			die "sacctmgr add account $SLURM_ACCOUNT failed"
	fi
	if ! in_cluster "$c" sacctmgr -n -P list assoc cluster="$c" user="$SLURM_JOB_USER" format=user 2>/dev/null | grep -qx "$SLURM_JOB_USER"; then
		in_cluster "$c" sacctmgr -i add user "$SLURM_JOB_USER" account="$SLURM_ACCOUNT" cluster="$c" >&2 ||
			die "sacctmgr add user $SLURM_JOB_USER failed"
	fi
}

start_slurm_cluster() {
	local c=$1 conf host reconf d
	conf=$(slurm_conf_path "$c")
	host=$(slurm_host)
	slurm_associations "$c"
	reconf="SLURM_RECONFIGURED_${c//[^A-Za-z0-9]/_}"
	if [[ ${!reconf:-0} == 1 ]]; then
		for d in slurmrestd slurmd slurmctld; do
			if slurm_daemon_ours "$c-$d" "$(slurm_word "$c" "$d")"; then
				note "restarting $d of cluster $c for the new slurm.conf"
				stop_pidfile "$c-$d" "$(slurm_pidfile "$c-$d")" "$(slurm_word "$c" "$d")" 60
			fi
		done
	fi
	if slurm_daemon_ours "$c-slurmctld" "$conf"; then
		note "slurmctld of $c already running (pid $(<"$(slurm_pidfile "$c-slurmctld")"))"
	else
		say "starting slurmctld of cluster $c on 127.0.0.1:$(slurmctld_port "$c")"
		# Without -c slurmctld recovers jobs and node state saved by the previous run.
		start_daemon "$c-slurmctld" "$(slurm_pidfile "$c-slurmctld")" "$LOG_DIR/slurm24-$c-slurmctld.out" \
			chroot "$SLURM_ROOT" /usr/bin/env SLURM_CONF="$conf" /usr/sbin/slurmctld -D -f "$conf"
		SLURM_FRESH=1
	fi
	if slurm_daemon_ours "$c-slurmd" "$conf"; then
		note "slurmd of $c already running (pid $(<"$(slurm_pidfile "$c-slurmd")"))"
	else
		say "starting slurmd of cluster $c (node $c-n1 on 127.0.0.1:$(slurmd_port "$c"))"
		start_daemon "$c-slurmd" "$(slurm_pidfile "$c-slurmd")" "$LOG_DIR/slurm24-$c-slurmd.out" \
			chroot "$SLURM_ROOT" /usr/bin/env SLURM_CONF="$conf" /usr/sbin/slurmd -D -f "$conf" -N "$c-n1"
		SLURM_FRESH=1
	fi
	if slurm_daemon_ours "$c-slurmrestd" "127.0.0.1:$(slurmrestd_port "$c")"; then
		note "slurmrestd of $c already running (pid $(<"$(slurm_pidfile "$c-slurmrestd")"))"
	elif port_open "$(slurmrestd_port "$c")"; then
		die "127.0.0.1:$(slurmrestd_port "$c") already answers (not slurmrestd of cluster $c started by this script)"
	else
		say "starting slurmrestd of cluster $c as $SLURMREST_USER on 127.0.0.1:$(slurmrestd_port "$c") (JWT)"
		# SLURM_JWT=daemon: every request brings its own user and token in X-SLURM-USER-* headers.
		start_daemon "$c-slurmrestd" "$(slurm_pidfile "$c-slurmrestd")" "$LOG_DIR/slurm24-$c-slurmrestd.log" \
			chroot --userspec="$SLURMREST_USER:$SLURMREST_USER" "$SLURM_ROOT" \
			/usr/bin/env SLURM_JWT=daemon SLURM_CONF="$conf" \
			/usr/sbin/slurmrestd -a rest_auth/jwt "127.0.0.1:$(slurmrestd_port "$c")"
	fi
}

start_slurm() {
	local c
	start_slurm_shared
	for c in $SLURM_CLUSTERS; do start_slurm_cluster "$c"; done
}

ready_slurm_cluster() {
	local c=$1 conf node state resumed=0 token code t0=$SECONDS port
	conf=$(slurm_conf_path "$c")
	node="$c-n1"
	port=$(slurmrestd_port "$c")
	wait_until "$TIMEOUT" "$(slurm_pidfile "$c-slurmctld")" "$SLURM_ROOT/var/log/slurm/$c/slurmctld.log" \
		"slurmctld of $c" slurmctld24_ok "$c"
	[[ ${SLURM_FRESH:-0} == 1 ]] && say "waiting for node $node of $c to be idle"
	while :; do
		state=$(in_cluster "$c" sinfo -h -n "$node" -o %T 2>/dev/null | head -n1)
		case $state in
		idle | mixed | allocated | completing) break ;;
		esac
		if ! slurm_daemon_ours "$c-slurmd" "$conf"; then
			tail -n 30 "$SLURM_ROOT/var/log/slurm/$c/slurmd.log" "$LOG_DIR/slurm24-$c-slurmd.out" >&2 2>/dev/null || true
			die "slurmd of $c exited during startup; see $SLURM_ROOT/var/log/slurm/$c/slurmd.log"
		fi
		# A node left down or drained by an earlier run (e.g. killed slurmd) comes back once.
		if ((resumed == 0 && SECONDS - t0 > 5)) && [[ $state =~ ^(down|drain|drained|draining)$ ]]; then
			note "node $node is $state; resuming it"
			in_cluster "$c" scontrol update nodename="$node" state=resume >&2 2>/dev/null || true
			resumed=1
		fi
		((SECONDS - t0 < TIMEOUT)) || die "node $node is '${state:-unknown}' after ${TIMEOUT}s; see $SLURM_ROOT/var/log/slurm/$c/slurmd.log"
		sleep 1
	done
	token=$(slurm_token 600 "$c") || die "scontrol token username=$SLURM_JOB_USER on $c failed"
	while :; do
		code=$(curl -s -o "$RUN_DIR/slurm24-$c-ready.out" -w '%{http_code}' --max-time 5 \
			-H "X-SLURM-USER-NAME: $SLURM_JOB_USER" -H "X-SLURM-USER-TOKEN: $token" \
			"http://127.0.0.1:$port/slurmdb/v0.0.42/qos" 2>/dev/null || true)
		[[ $code == 200 ]] && break
		if ! slurm_daemon_ours "$c-slurmrestd" "127.0.0.1:$port"; then
			tail -n 30 "$LOG_DIR/slurm24-$c-slurmrestd.log" >&2 2>/dev/null || true
			die "slurmrestd of $c exited during startup; see $LOG_DIR/slurm24-$c-slurmrestd.log"
		fi
		((SECONDS - t0 < TIMEOUT)) || {
			cat "$RUN_DIR/slurm24-$c-ready.out" >&2 2>/dev/null || true
			die "slurmrestd of $c: /slurmdb/v0.0.42/qos answered HTTP ${code:-nothing} after ${TIMEOUT}s"
		}
		sleep 0.5
	done
	note "Slurm 24.11 cluster $c ready: node $node $state, slurmrestd http://127.0.0.1:$port (JWT, user $SLURM_JOB_USER)"
}

ready_slurm() {
	local c
	for c in $SLURM_CLUSTERS; do ready_slurm_cluster "$c"; done
}

stop_slurm() {
	local c d
	for c in $(slurm_all_clusters); do
		for d in slurmrestd slurmd slurmctld; do
			# slurmctld writes its state (jobs, node states) to StateSaveLocation on SIGTERM.
			stop_pidfile "$c-$d" "$(slurm_pidfile "$c-$d")" "$(slurm_word "$c" "$d")" 60
		done
	done
	stop_pidfile slurmdbd "$(slurm_pidfile slurmdbd)" slurmdbd 60
	stop_pidfile mariadbd "$(slurm_pidfile mariadbd)" mariadbd 60
	stop_pidfile munged "$(slurm_pidfile munged)" munged 30
	slurm_umount
}

status_line() { printf '%-17s %-5s %-22s %s\n' "$@"; }

status_slurm() {
	local c d pid state by addr
	for d in munged mariadbd slurmdbd; do
		pid=$(read_file "$(slurm_pidfile "$d")")
		state=down by="-"
		pid_matches "$pid" "$d" && state=up by="stack.sh (pid $pid)"
		case $d in
		munged) addr="chroot:/run/munge" ;;
		mariadbd) addr="127.0.0.1:$MARIADB_PORT" ;;
		slurmdbd) addr="127.0.0.1:$SLURMDBD_PORT" ;;
		esac
		status_line "$d" "$state" "$addr" "$by"
	done
	for c in $(slurm_all_clusters); do
		for d in slurmctld slurmd slurmrestd; do
			case $d in
			slurmctld) addr="127.0.0.1:$(slurmctld_port "$c")" ;;
			slurmd) addr="127.0.0.1:$(slurmd_port "$c")" ;;
			slurmrestd) addr="127.0.0.1:$(slurmrestd_port "$c")" ;;
			esac
			pid=$(read_file "$(slurm_pidfile "$c-$d")")
			state=down by="-"
			if pid_matches "$pid" "$(slurm_word "$c" "$d")"; then
				state=up by="stack.sh (pid $pid)"
				[[ $d == slurmd ]] && state=$(in_cluster "$c" sinfo -h -n "$c-n1" -o %T 2>/dev/null | head -n1 || true)
			fi
			status_line "$c/$d" "${state:-?}" "$addr" "$by"
		done
	done
}

env_slurm() {
	local c first token
	first=$(slurm_first_cluster)
	port_open "$(slurmrestd_port "$first")" || return 0
	# The first cluster is the default backend; every cluster also has its own variables
	# SLURMRESTD_URL_<CLUSTER>, SLURM_JWT_TOKEN_<CLUSTER> and SLURM_BIN_DIR_<CLUSTER>.
	emit_export SLURMRESTD_URL "http://127.0.0.1:$(slurmrestd_port "$first")"
	emit_export SLURM_USER "$SLURM_JOB_USER"
	emit_export FLEET_SLURM_CLUSTER "$first"
	emit_export FLEET_SLURM_CLUSTERS "$SLURM_CLUSTERS"
	emit_export SLURM_BIN_DIR "$(slurm_bin_dir "$first")"
	emit_export FLEET_SLURM_ACCOUNT "$SLURM_ACCOUNT"
	for c in $SLURM_CLUSTERS; do
		port_open "$(slurmrestd_port "$c")" || continue
		env_slurm_cluster "$c" "$first"
	done
}

slurm_env_suffix() {
	local up=${1^^}
	echo "${up//[^A-Z0-9]/_}"
}

# env_slurm_cluster CLUSTER [FIRST]: SLURMRESTD_URL_<C>, SLURM_BIN_DIR_<C> and SLURM_JWT_TOKEN_<C>
# (and SLURM_JWT_TOKEN when CLUSTER is FIRST, the default backend).
env_slurm_cluster() {
	local c=$1 up token
	up=$(slurm_env_suffix "$c")
	emit_export "SLURMRESTD_URL_$up" "http://127.0.0.1:$(slurmrestd_port "$c")"
	emit_export "SLURM_BIN_DIR_$up" "$(slurm_bin_dir "$c")"
	if token=$(slurm_token "" "$c"); then
		emit_export "SLURM_JWT_TOKEN_$up" "$token"
		if [[ $c == "${2:-}" ]]; then emit_export SLURM_JWT_TOKEN "$token"; fi
	else
		note "could not get a Slurm token for $SLURM_JOB_USER on $c; SLURM_JWT_TOKEN_$up not exported"
	fi
}

logs_slurm() {
	local f c
	for f in "$SLURM_ROOT/var/log/slurm/slurmdbd.log" "$LOG_DIR/slurm24-mariadbd.log"; do
		if [[ -f $f ]]; then echo "$f"; fi
	done
	for c in $(slurm_all_clusters); do
		for f in "$SLURM_ROOT/var/log/slurm/$c/slurmctld.log" "$SLURM_ROOT/var/log/slurm/$c/slurmd.log" "$LOG_DIR/slurm24-$c-slurmrestd.log"; do
			if [[ -f $f ]]; then echo "$f"; fi
		done
	done
}

# ---------------------------------------------------------------------------------------
# commands

selected() {
	local c out=()
	for c in $KNOWN_COMPONENTS; do
		has_component "$c" && out+=("$c")
	done
	echo "${out[@]}"
}

# stop_orphaned stops the selected components with a daemon whose working
# directory is gone (started from a checkout that was removed since): such a
# daemon fails at its next getcwd, slurmrestd on the next job submission.
stop_orphaned() {
	local f pid name c stale=" "
	for f in "$RUN_DIR"/*.pid; do
		[[ -f $f ]] || continue
		pid=$(<"$f")
		[[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == *" (deleted)" ]] || continue
		name=$(basename "$f" .pid)
		case $name in
		kafka-*) c=kafka ;;
		slurm*) c=slurm ;;
		*) c=$name ;;
		esac
		has_component "$c" && [[ $stale != *" $c "* ]] || continue
		say "$name (pid $pid) runs in a deleted directory: restarting $c"
		stale+="$c "
	done
	for c in $stale; do "stop_$c"; done
}

cmd_up() {
	local c t0=$SECONDS
	lock_state
	# Daemons inherit the working directory; / never disappears.
	cd /
	for c in $(selected); do "install_$c"; done
	stop_orphaned
	for c in $(selected); do "start_$c"; done
	for c in $(selected); do "ready_$c"; done
	say "stack up in $((SECONDS - t0))s"
	cmd_env
}

cmd_down() {
	local c comps=()
	lock_state
	for c in $(selected); do comps=("$c" "${comps[@]}"); done
	for c in "${comps[@]}"; do "stop_$c"; done
}

cmd_env() {
	local c
	for c in $(selected); do "env_$c"; done
}

cmd_status() {
	local c
	printf '%-17s %-5s %-22s %s\n' COMPONENT STATE ADDRESS STARTED-BY
	for c in $(selected); do "status_$c"; done
}

cmd_logs() {
	local c files=() f follow=0
	[[ ${1:-} == -f ]] && follow=1
	for c in $(selected); do
		while IFS= read -r f; do files+=("$f"); done < <("logs_$c")
	done
	((${#files[@]})) || die "no log files yet under $LOG_DIR or /var/log/rabbitmq"
	if ((follow)); then
		exec tail -n 20 -F "${files[@]}"
	fi
	tail -n "${FLEET_STACK_LOG_LINES:-40}" "${files[@]}"
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

main() {
	local cmd=${1:-}
	[[ -n $cmd ]] || {
		usage >&2
		exit 2
	}
	shift
	local args=()
	while (($#)); do
		case $1 in
		--kafka-brokers) KAFKA_BROKER_COUNT=${2:?--kafka-brokers needs 1 or 3}; shift 2 ;;
		--kafka-brokers=*) KAFKA_BROKER_COUNT=${1#*=}; shift ;;
		--components) COMPONENTS=${2:?--components needs a list}; shift 2 ;;
		--components=*) COMPONENTS=${1#*=}; shift ;;
		--) shift; args+=("$@"); break ;;
		*) args+=("$1"); shift ;;
		esac
	done
	[[ $KAFKA_BROKER_COUNT == 1 || $KAFKA_BROKER_COUNT == 3 ]] || die "--kafka-brokers must be 1 or 3"
	local c
	for c in ${COMPONENTS//,/ }; do
		[[ " $KNOWN_COMPONENTS " == *" $c "* ]] || die "unknown component '$c' (known: $KNOWN_COMPONENTS)"
	done
	case $cmd in
	up) cmd_up ;;
	down) cmd_down ;;
	env) cmd_env ;;
	status) cmd_status ;;
	logs) cmd_logs "${args[@]}" ;;
	kafka-classpath) kafka_classpath; echo ;;
	kafka-topics)
		local n
		n=$(kafka_running_layout)
		kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_bootstrap "${n:-1}")" "${args[@]}"
		;;
	kafka-tool) kafka_tool "${args[@]}" ;;
	pg-fresh-db) pg_fresh_db "${args[@]}" ;;
	slurm-token) slurm_token "${args[@]}" && echo ;;
	slurm-cluster) cmd_slurm_cluster "${args[@]}" ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
