# Cosmic Horizons Fleet — developer entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

MODULES  := libs proto schemas tools services/job-orchestrator services/metrics-consumer \
            services/notification-consumer services/compliance-auditor services/health-monitor
SERVICES := job-orchestrator metrics-consumer notification-consumer compliance-auditor health-monitor
STACK    := tools/stack/stack.sh
# Exports the running stack's addresses (KAFKA_BROKERS, AMQP_URL, ...), the Avro
# readers of tools/interop (INTEROP_JAVA_CLASSPATH, INTEROP_PYTHON) and the Python
# environment of tools/python-client (FLEET_CLIENT_PYTHON) into a recipe.
WITH_STACK := eval "$$($(STACK) env)"; eval "$$(tools/interop/setup.sh)"; eval "$$(tools/python-client/setup.sh)";
GOTEST_FLAGS ?= -count=1 -timeout 15m

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: up
up: ## install what is missing, start the stack on loopback and create the fleet's Kafka topics
	@$(STACK) up >/dev/null
	@tools/interop/setup.sh >/dev/null
	@tools/python-client/setup.sh >/dev/null
	@$(WITH_STACK) go run ./tools/cmd/chctl topics >/dev/null
	@$(STACK) status

.PHONY: down
down: ## stop what `make up` started
	@$(STACK) down

.PHONY: run
run: up build ## bring up the stack and the five services; Ctrl-C stops them
	@tools/run.sh

.PHONY: build
build: ## build the five service binaries and chctl into bin/
	@mkdir -p bin
	@for s in $(SERVICES); do go build -o bin/$$s ./services/$$s/cmd/$$s; done
	@go build -o bin/chctl ./tools/cmd/chctl

# Tests named TestOutage* stop a shared component for a while, and tests named
# TestSlurm* fill the one-node Slurm cluster; they run after the others, one
# package at a time, so that no other test sees the outage or the full node.
SERIAL_TESTS := ^Test(Outage|Slurm)
PACKAGES := $(addprefix ./,$(addsuffix /...,$(MODULES)))

.PHONY: test
test: up check ## start the stack, then run every check and test against it
	@$(WITH_STACK) go test $(GOTEST_FLAGS) -skip '$(SERIAL_TESTS)' $(PACKAGES)
	@echo "==> tests that stop a shared component or fill the Slurm node (TestOutage*, TestSlurm*), one package at a time"
	@$(WITH_STACK) go test $(GOTEST_FLAGS) -p 1 -run '$(SERIAL_TESTS)' $(PACKAGES) | { grep -v 'no tests to run' || true; }
	@echo "==> fuzz targets, $(FUZZ_SHORT) inputs each (make fuzz runs them longer)"
	@tools/fuzz.sh $(FUZZ_SHORT)


# The chaos run starts its own 3-broker Kafka cluster (replication 3, min ISR 2) from the
# stack's jars on ports of its own, runs the fleet against it, SIGKILLs brokers, consumers
# and the orchestrator under load, restarts the slurmctld of a Slurm cluster of its own
# (stack.sh slurm-cluster chaos, beside the stack's clusters) and prints a table
# (docs/operations.md, "Chaos run").
CHAOS_TIMEOUT ?= 30m

.PHONY: chaos
chaos: up ## kill brokers, consumers, the orchestrator and a slurmctld under load; print what was lost or duplicated
	@eval "$$($(STACK) env)"; go test -tags chaos -count=1 -timeout $(CHAOS_TIMEOUT) -run '^TestChaos$$' -v ./tools/chaos/

.PHONY: check
check: fmt-check vet standalone layer-check proto-check python-client-check schema-check ## static checks (no brokers needed)

.PHONY: fmt-check
fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every module
	@go vet $(PACKAGES)

.PHONY: standalone
standalone: ## every module builds on its own (GOWORK=off, replace directives)
	@for m in $(MODULES); do (cd $$m && GOWORK=off go build ./... && GOWORK=off go vet ./...) || { echo "module $$m does not build with GOWORK=off"; exit 1; }; done

.PHONY: layer-check
layer-check: ## fail if a service's internal/app depends on its adapters or imports database/sql (or domain on app, ports, adapters, service)
	@go run ./tools/cmd/layercheck

.PHONY: proto
proto: ## regenerate the Go code of proto/ with the pinned tools
	@tools/proto-gen.sh

.PHONY: proto-check
proto-check: ## fail if generated code is stale or a proto change breaks the previous commit
	@tools/proto-check.sh

.PHONY: python-client
python-client: ## regenerate the Python stubs of tools/python-client with the pinned grpcio-tools
	@tools/python-client/gen.sh

.PHONY: python-client-check
python-client-check: ## fail if the committed Python stubs differ from a fresh generation
	@tools/python-client/check.sh

.PHONY: schema-check
schema-check: ## check every Avro schema is fully compatible with its previous version
	@go run ./tools/cmd/schemacheck

.PHONY: avro-fingerprints
avro-fingerprints: ## regenerate the reference fingerprints of every schema (Apache Avro Java, fastavro)
	@tools/interop/regen-fingerprints.sh

# Inputs per fuzz target in `make test`: a few seconds each.
FUZZ_SHORT ?= 300x

.PHONY: fuzz
fuzz: ## run every fuzz target (event decoder, export reader, one per gRPC request type) for FUZZTIME each (default 60s)
	@FUZZ_MINIMIZE=$${FUZZ_MINIMIZE:-10s} tools/fuzz.sh $${FUZZTIME:-60s}

# Jobs in the sweep of `make bench` (each runs as a local process).
SWEEP_JOBS ?= 10000

.PHONY: bench
bench: up ## measure buses and consumers against the real stack; prints markdown reports
	@$(WITH_STACK) go run ./tools/cmd/fleetbench
	@echo; $(WITH_STACK) go run ./tools/cmd/fleetbench submit
	@echo; $(WITH_STACK) go run ./tools/cmd/fleetbench sweep -jobs $(SWEEP_JOBS)
	@echo; $(WITH_STACK) go run ./tools/cmd/fleetbench consumers
	@echo; echo "## Consumers and stores (go test -bench; custom metrics per line)"; echo; echo '```'
	@$(WITH_STACK) go test -run '^$$' -bench BenchmarkRelay -benchtime 1x ./libs/outbox/ | grep -E '^Benchmark'
	@$(WITH_STACK) BENCH_INTERVAL=5ms go test -run '^$$' -bench BenchmarkTerminalEventToEmailAccepted -benchtime 400x ./services/notification-consumer/internal/service/ | grep -E '^Benchmark'
	@$(WITH_STACK) go test -run '^$$' -bench 'BenchmarkVerifySQLite' -benchtime 100000x ./services/compliance-auditor/internal/app/ | grep -E '^Benchmark'
	@$(WITH_STACK) go test -run '^$$' -bench 'BenchmarkInboxApply' ./libs/inbox/ | grep -E '^Benchmark'
	@$(WITH_STACK) go test -run '^$$' -bench 'BenchmarkReconciler(Dispatch|Record)$$|BenchmarkListActiveVersions' -benchtime 3x ./services/job-orchestrator/internal/adapters/store/ | grep -E '^Benchmark'
	@$(WITH_STACK) go test -run '^$$' -bench 'BenchmarkSubmitJob' -benchtime 3000x ./services/job-orchestrator/internal/ports/ | grep -E '^Benchmark'
	@$(WITH_STACK) go test -run '^$$' -bench 'BenchmarkSlurmPollPass' -benchtime 3x ./services/job-orchestrator/internal/adapters/scheduler/slurm/ | grep -E '^Benchmark'
	@echo '```'

.PHONY: clean
clean: ## remove build output
	@rm -rf bin
