# brokerbench: make bench | make calibrate | make failover-test | make report | make overview | make test | make redis-cluster | make producer | make consumer
PROFILE ?= quick
CARGO ?= cargo
BIN := target/release/brokerbench
RESULTS ?= results

# The scenarios `make bench` runs, in order (about 15 minutes on 2 cores with PROFILE=quick).
BENCH_SCENARIOS ?= scenarios/redis-default.toml scenarios/throughput.toml \
	scenarios/latency-1k.toml scenarios/latency-5k.toml scenarios/latency-10k.toml \
	scenarios/persistence.toml scenarios/scaling.toml

# The scenarios `make failover-test` runs (about 10 minutes with PROFILE=quick).
FAILOVER_SCENARIOS ?= scenarios/failover-leader.toml scenarios/failover-replica.toml \
	scenarios/failover-consumer.toml

ifeq ($(PROFILE),full)
RUN_FLAGS := --warmup 30s --duration 120s
else ifneq ($(PROFILE),quick)
$(error PROFILE=$(PROFILE) is not a profile; use PROFILE=quick (default) or PROFILE=full)
endif

.PHONY: all deps build bench calibrate calibrate-memory failover-test report overview test redis-cluster rabbitmq-cluster cluster-status cluster-down producer consumer fmt clippy

all: build

deps:
	@./scripts/install-brokers.sh

build:
	$(CARGO) build --release

bench: deps build
	$(BIN) run $(RUN_FLAGS) --results $(RESULTS) $(BENCH_SCENARIOS)

# The harness's own ceiling on this host: the load engine against the in-memory backend at max
# rate (no broker), about 3 s. `run` records it in every results folder (cached per binary and host).
calibrate: build
	$(BIN) calibrate

# The harness's memory at 1M and 10M messages (ledger bytes per message, RSS).
calibrate-memory: build
	$(BIN) calibrate --messages 1000000
	$(BIN) calibrate --messages 10000000

failover-test: deps build
	$(BIN) run $(RUN_FLAGS) --results $(RESULTS) $(FAILOVER_SCENARIOS)

# Rebuild charts and report of the newest results folder (no broker needed).
report: build
	@latest=$$(ls -d $(RESULTS)/2*/ 2>/dev/null | sort | tail -1); \
	if [ -z "$$latest" ]; then echo "no results folder in $(RESULTS)/; run make bench first" >&2; exit 2; fi; \
	$(BIN) report "$$latest"

# The overview of every scenario's newest run: one verdict per claim (no broker needed).
overview: build
	$(BIN) overview --results $(RESULTS)

test: deps
	$(CARGO) test --all-targets

# The proposal's tutorial: a local cluster on 127.0.0.1:7001-7006, a producer, a consumer.
redis-cluster: deps build
	$(BIN) cluster up redis

rabbitmq-cluster: deps build
	$(BIN) cluster up rabbitmq

cluster-status: build
	-$(BIN) cluster status redis
	-$(BIN) cluster status rabbitmq

cluster-down: build
	-$(BIN) cluster down redis
	-$(BIN) cluster down rabbitmq

producer: build
	$(BIN) produce

consumer: build
	$(BIN) consume

fmt:
	$(CARGO) fmt

clippy:
	$(CARGO) clippy --all-targets -- -D warnings
