# brokerbench: make bench | make bench-versions | make brokers-debian13 | make failover-test | make calibrate | make bench-harness | make report | make overview | make test | make redis-cluster | make monitoring | make producer | make consumer
PROFILE ?= quick
CARGO ?= cargo
BIN := target/release/brokerbench
RESULTS ?= results

# The scenarios `make bench` runs, in order. The claim scenarios (throughput, latency-*, scaling:
# C3 and C6) set `repeat = 3`: 135 backend runs (11 + 6 + 7 + 6 + 15 backends, 3 times each) of
# 1 s warm-up + 4 s measured with PROFILE=quick, about 9 s each with setup, drain and teardown,
# plus redis-default and persistence (8 runs, about 75 s) and 11 cluster starts (4 of them from
# the Debian 13 root: RabbitMQ 4.0 and Redis 8.0 rows in throughput, latency-5k and scaling).
# Timed on 2026-12-02: the runs 18.8 minutes, the release build 10 minutes on a host busy with
# two other builds (3-5 on a quiet one): about 22 minutes. throughput.toml's native stream with
# sub-entries (added after that timing) adds 3 runs, about 30 s.
BENCH_SCENARIOS ?= scenarios/redis-default.toml scenarios/throughput.toml \
	scenarios/latency-1k.toml scenarios/latency-5k.toml scenarios/latency-10k.toml \
	scenarios/persistence.toml scenarios/scaling.toml

# The scenarios `make failover-test` runs: a leader killed or frozen (failover-leader: C4 under
# both fault models), a leader killed at 80% of each backend's measured maximum rate
# (failover-load: C1 at load), a consumer killed holding 500 messages (C5's redelivery), and a
# replay of 100 000 messages by a new consumer group or offset (C5's replay). Each has RabbitMQ
# 4.0 rows (the native stream among them) from the Debian 13 root. Timed on 2026-12-02: 954 s
# in all, the runs 13.9 minutes plus a 2-minute release build. PROFILE=full adds a
# replica's death (failover-replica, about 3 minutes) and a network partition
# (failover-partition, about 4 minutes: nodes in network namespaces, needs root).
FAILOVER_SCENARIOS ?= scenarios/failover-leader.toml scenarios/failover-load.toml \
	scenarios/failover-consumer.toml scenarios/replay.toml
ifeq ($(PROFILE),full)
FAILOVER_SCENARIOS += scenarios/failover-replica.toml scenarios/failover-partition.toml
endif

# Broker roots the scenarios ask for (`broker_root = "debian13"`): built before the run.
roots_for = $(if $(shell grep -ls '^[[:space:]]*broker_root[[:space:]]*=[[:space:]]*"debian13"' $(1) 2>/dev/null),brokers-debian13)

# PROFILE=quick shortens each repetition of `make bench` rather than drop repetitions; the
# failover scenarios keep their own durations (their faults are timed inside them).
# PROFILE=defaults is quick with the brokers' production failure detection on every local
# cluster (Redis cluster-node-timeout 15 s, RabbitMQ net_ticktime 60 s instead of the
# scenarios' 2 s and 10 s): `make failover-test PROFILE=defaults`.
ifeq ($(PROFILE),full)
RUN_FLAGS := --warmup 30s --duration 120s
BENCH_FLAGS := $(RUN_FLAGS)
else ifeq ($(PROFILE),quick)
BENCH_FLAGS := --warmup 1s --duration 4s
else ifeq ($(PROFILE),defaults)
RUN_FLAGS := --failure-detection defaults
BENCH_FLAGS := --warmup 1s --duration 4s $(RUN_FLAGS)
else
$(error PROFILE=$(PROFILE) is not a profile; use PROFILE=quick (default), PROFILE=full or PROFILE=defaults)
endif

.PHONY: all deps brokers-debian13 test-deps build bench bench-versions bench-harness calibrate calibrate-memory failover-test report overview test redis-cluster rabbitmq-cluster cluster-status cluster-down monitoring monitoring-down producer consumer fmt clippy

all: build

deps:
	@./scripts/install-brokers.sh

build:
	$(CARGO) build --release

# The Debian 13 broker root (RabbitMQ 4.0, Redis 8.0) in .cache/roots/debian13, for cluster
# sections with `broker_root = "debian13"`: about 1.5 min the first time, a no-op afterwards
# (docs/broker-roots.md). Installs debootstrap when missing.
brokers-debian13:
	@command -v debootstrap >/dev/null 2>&1 || { echo "installing debootstrap with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }; }
	@./tools/broker-root.sh build debian13

bench: deps build $(call roots_for,$(BENCH_SCENARIOS))
	$(BIN) run $(BENCH_FLAGS) --results $(RESULTS) $(BENCH_SCENARIOS)

# The harness's own ceiling on this host: the load engine against the in-memory backend at max
# rate (no broker), about 3 s. `run` records it in every results folder (cached per binary and host).
calibrate: build
	$(BIN) calibrate

# The harness's memory at 1M and 10M messages (ledger bytes per message, RSS).
calibrate-memory: build
	$(BIN) calibrate --messages 1000000
	$(BIN) calibrate --messages 10000000

# Debian 12's brokers beside Debian 13's (RabbitMQ 3.10 vs 4.0, Redis 7.0 vs 8.0), same workload:
# scenarios/versions.toml, about 8 minutes (the root is built first when missing).
bench-versions: deps build brokers-debian13
	$(BIN) run $(RUN_FLAGS) --results $(RESULTS) scenarios/versions.toml

failover-test: deps build $(call roots_for,$(FAILOVER_SCENARIOS))
	$(BIN) run $(RUN_FLAGS) --results $(RESULTS) $(FAILOVER_SCENARIOS)

# brokerbench's client side against redis-benchmark and a perf-test-like pika publisher, side by
# side on its own local clusters (ports in tools/bench-harness.toml): throughput and client CPU
# per million messages, 3 alternating rounds (about 3 minutes). Exit 1 when a target is missed.
BENCH_VENV ?= run/bench-venv
BENCH_HARNESS_FLAGS ?=
bench-harness: deps build
	@python3 -c 'import ensurepip' 2>/dev/null || apt-get install -y -q python3-venv
	@test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -c 'import pika' 2>/dev/null || $(BENCH_VENV)/bin/pip install -q 'pika>=1.3,<2'
	$(BENCH_VENV)/bin/python tools/bench_harness.py --bin $(BIN) --python $(BENCH_VENV)/bin/python $(BENCH_HARNESS_FLAGS)

# Rebuild charts and report of the newest results folder (no broker needed).
report: build
	@latest=$$(ls -d $(RESULTS)/2*/ 2>/dev/null | sort | tail -1); \
	if [ -z "$$latest" ]; then echo "no results folder in $(RESULTS)/; run make bench first" >&2; exit 2; fi; \
	$(BIN) report "$$latest"

# The overview of every scenario's newest run: one verdict per claim (no broker needed).
overview: build
	$(BIN) overview --results $(RESULTS)

# What the report tests run beside brokerbench, installed with apt when missing: headless
# Chromium opens report.html (tests/report_html.rs; about 200 MB with its libraries), and
# HdrHistogram's HistogramLogProcessor (a Java runtime and Debian's jar) reads the hlogs
# (tests/hdr_tools.rs); docker-compose validates the compose files (tests/monitoring.rs) and iproute2
# builds the partition tests' network namespaces (tests/partition.rs).
test-deps:
	@need=""; command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	command -v java >/dev/null 2>&1 || need="$$need default-jre-headless"; \
	[ -f /usr/share/java/hdrhistogram.jar ] || need="$$need libhdrhistogram-java"; \
	command -v docker-compose >/dev/null 2>&1 || need="$$need docker-compose"; \
	command -v ip >/dev/null 2>&1 || need="$$need iproute2"; \
	if [ -n "$$need" ]; then echo "installing$$need with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need; }; fi

test: deps brokers-debian13 test-deps
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

# Prometheus (127.0.0.1:9090) and one redis_exporter per Redis node (9121-9126) beside the
# clusters of `make redis-cluster` / `make rabbitmq-cluster`, scraping them, RabbitMQ's
# prometheus endpoints (15692-15694) and brokerbench's live metrics (127.0.0.1:9190, `run
# --metrics-addr 127.0.0.1:9190`); SCENARIO=file takes the clusters and ports from a scenario.
# docs/monitoring.md.
monitoring: deps build
	$(BIN) monitoring up $(if $(SCENARIO),--scenario $(SCENARIO))

monitoring-down: build
	$(BIN) monitoring down

producer: build
	$(BIN) produce

consumer: build
	$(BIN) consume

fmt:
	$(CARGO) fmt

clippy:
	$(CARGO) clippy --all-targets -- -D warnings
