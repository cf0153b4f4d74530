#!/usr/bin/env bash
# Local stack for Cosmic Horizons Fleet: installs and runs the brokers the fleet and its
# integration tests need, on loopback, without Docker.
#
# Components (one install_/start_/ready_/stop_ function set each):
#   kafka     Apache Kafka 4.x in KRaft combined mode (broker+controller per process); jars
#             resolved from Maven Central with mvn (tools/stack/kafka/pom.xml), run with the
#             machine's Java 17. 1 broker (127.0.0.1:9092) or 3 (9092, 9093, 9094), one quorum;
#             controllers listen on 19092+.
#   rabbitmq  Debian's rabbitmq-server with the management plugin
#             (AMQP 127.0.0.1:5672, HTTP API 127.0.0.1:15672, guest/guest).
#
# Usage:  stack.sh up [--kafka-brokers 1|3] [--components kafka,rabbitmq]
#         stack.sh down [--components ...]
#         stack.sh env | status | kafka-classpath | logs [-f]
#         stack.sh kafka-topics ARGS...   (TopicCommand against the running cluster)
#         stack.sh kafka-tool MAIN_CLASS ARGS...
#   eval "$(tools/stack/stack.sh up)"   exports the addresses (progress goes to stderr).
#
# Environment:
#   FLEET_STACK_HOME           state, logs and caches (default /var/lib/fleet-stack)
#   FLEET_STACK_COMPONENTS     default component list (default kafka,rabbitmq)
#   FLEET_STACK_KAFKA_VERSION  Kafka version from Maven Central (default 4.4.0)
#   FLEET_STACK_KAFKA_BROKERS  broker count when --kafka-brokers is not given (1 or 3)
#   FLEET_STACK_KAFKA_HEAP     max heap per broker (default 768m)
#   FLEET_STACK_TIMEOUT        seconds to wait for a component to become ready (default 180)
#   FLEET_STACK_LOG_LINES      lines shown per file by `logs` (default 40)
#
# Exports printed by `up` / `env`:
#   KAFKA_BROKERS, KAFKA_CLASSPATH, AMQP_URL, RABBITMQ_MGMT_URL
#
# Adding a component (postgres, slurm, mailpit, jaeger): write install_X, start_X, ready_X,
# stop_X, status_X and env_X, and add X to KNOWN_COMPONENTS.
set -euo pipefail

readonly KNOWN_COMPONENTS="kafka rabbitmq"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly STACK_HOME="${FLEET_STACK_HOME:-/var/lib/fleet-stack}"
readonly RUN_DIR="$STACK_HOME/run"
readonly LOG_DIR="$STACK_HOME/log"
readonly CACHE_DIR="$STACK_HOME/cache"
readonly TIMEOUT="${FLEET_STACK_TIMEOUT:-180}"

readonly KAFKA_VERSION="${FLEET_STACK_KAFKA_VERSION:-4.4.0}"
readonly KAFKA_HEAP="${FLEET_STACK_KAFKA_HEAP:-768m}"
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

COMPONENTS="${FLEET_STACK_COMPONENTS:-kafka,rabbitmq}"
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
		setsid java -Xmx"$KAFKA_HEAP" -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
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
			printf '%-14s %-5s %-22s %s\n' "kafka-$i" up "127.0.0.1:$port" "$by"
		else
			printf '%-14s %-5s %-22s %s\n' "kafka-$i" down "127.0.0.1:$port" "$by"
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
	printf '%-14s %-5s %-22s %s\n' rabbitmq "$state" "$RABBIT_HOST:$RABBIT_PORT" "$by"
	state=down
	port_open "$RABBIT_MGMT_PORT" && state=up
	printf '%-14s %-5s %-22s %s\n' rabbitmq-mgmt "$state" "$RABBIT_HOST:$RABBIT_MGMT_PORT" "$by"
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
# commands

selected() {
	local c out=()
	for c in $KNOWN_COMPONENTS; do
		has_component "$c" && out+=("$c")
	done
	echo "${out[@]}"
}

cmd_up() {
	local c t0=$SECONDS
	lock_state
	for c in $(selected); do "install_$c"; done
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
	printf '%-14s %-5s %-22s %s\n' COMPONENT STATE ADDRESS STARTED-BY
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
	-h | --help | help) usage ;;
	*)
		usage >&2
		die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
