# otelcol-gpu: the one entry point. `make demo` runs it, `make test` is what CI runs.
# Every tool is installed at a pinned version into $(TOOLS) (git-ignored); nothing is assumed on PATH
# beyond Go and gcc.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

OTELCOL_VERSION        := v0.160.0
OTELCOL_STABLE_VERSION := v1.66.0
GOLANGCI_LINT_VERSION := v2.15.0
NFPM_VERSION          := v2.45.2
VICTORIA_METRICS_VERSION := v1.151.0
VICTORIA_LOGS_VERSION    := v1.52.1
# v0.32+ embed a built web UI that is not in the Go module, so `go install` of
# them fails; v0.31.1 is the newest that builds from the module.
ALERTMANAGER_VERSION     := v0.31.1
VERSION               ?= 0.1.0

ROOT  := $(abspath .)
TOOLS := $(ROOT)/.tools/bin
BIN   := $(ROOT)/bin
CERTS := $(ROOT)/.certs
DIST  := cmd/otelcol-gpu

BUILDER       := $(TOOLS)/builder
GOLANGCI_LINT := $(TOOLS)/golangci-lint
NFPM          := $(TOOLS)/nfpm
VM            := $(TOOLS)/victoria-metrics
VL            := $(TOOLS)/victoria-logs
VMALERT       := $(TOOLS)/vmalert
ALERTMANAGER  := $(TOOLS)/alertmanager
LOADGEN       := $(BIN)/loadgen
DISTDIR       := $(ROOT)/dist
OTELCOL       := $(BIN)/otelcol-gpu
GPU_CHECK     := $(BIN)/gpu-check
BUILD         := $(ROOT)/build

# The simulated NVML library (test and demo equipment; see test/nvmlsim/README.md).
# NVMLSIM_OMIT builds a variant without these functions: an "older driver".
NVMLSIM        := $(BUILD)/nvmlsim/libnvidia-ml.so.1
NVMLSIM_OMIT   ?= nvmlDeviceGetPowerUsage nvmlGpmMetricsGet nvmlDeviceGetTemperatureV nvmlDeviceGetCurrentClocksEventReasons nvmlDeviceGetViolationStatus
NVMLSIM_OLD    := $(BUILD)/nvmlsim-omit/libnvidia-ml.so.1
NVML_H_DIR      = $(shell go list -m -f '{{.Dir}}' github.com/NVIDIA/go-nvml)/pkg/nvml
NVMLSIM_CFLAGS := -std=gnu2x -shared -fPIC -O2 -Wall -Wextra -Werror -Wno-deprecated-declarations -fvisibility=hidden

# go-nvml dlopens libnvidia-ml through cgo. Never link with -z now (BIND_NOW):
# go-nvml resolves NVML symbols lazily, and eager binding kills the process on
# drivers that lack a symbol.
export CGO_ENABLED := 1
# go-nvml declares every NVML function, deprecated ones too; their warnings are noise.
export CGO_CFLAGS := -O2 -g -Wno-deprecated-declarations
# The glibc baseline (docs/packaging.md, "Supported distributions"): every binary needs
# no symbol version newer than GLIBC_2.17, on amd64 and arm64, though linked
# here against a current glibc. netgo and osusergo drop the cgo resolver and
# user lookups; the stubs in $(BUILD)/glibc-baseline/<arch> (built by
# scripts/glibc-stubs.sh from packaging/glibc-baseline/) bind the cgo
# runtime's thread and dl calls and __libc_start_main to their old versions.
# The hash in -X changes with the stubs' sources, so Go's build cache never
# serves a link made against other stubs (the variable does not exist: -X
# of an unknown name is ignored).
GLIBC_BASELINE_SRC  := scripts/glibc-stubs.sh packaging/glibc-baseline/symbols packaging/glibc-baseline/start.c
GLIBC_BASELINE_HASH := $(shell cat $(GLIBC_BASELINE_SRC) | sha256sum | cut -c1-16)
GLIBC_STUBS          = $(BUILD)/glibc-baseline/$(1)
GLIBC_STUB_FILES     = $(call GLIBC_STUBS,$(1))/start.o $(call GLIBC_STUBS,$(1))/libpthread.so.0.stub $(call GLIBC_STUBS,$(1))/libdl.so.2.stub
# Every go command here (vet, golangci-lint's package loading, the tools, the
# test binaries) compiles with the distribution's -trimpath and tags: the build
# cache keys a compiled package by -trimpath and by the files its tags select
# (netgo/osusergo change package net's, and so every package above it), so the
# packages lint compiles are the ones the distribution links, compiled once.
# Commands that add tags (system, e2e) give them after $(GO_TAGS).
GO_TAGS := netgo,osusergo
export GOFLAGS := -trimpath -tags=$(GO_TAGS)
# Stripped (-s -w), and -z lazy in case the toolchain defaults to BIND_NOW.
GO_BUILD_FLAGS = -trimpath -tags $(GO_TAGS) \
	-ldflags "-s -w -X main.glibcBaseline=$(GLIBC_BASELINE_HASH) -extldflags '-Wl,-z,lazy $(call GLIBC_STUB_FILES,$(1))'"

# Sources that feed the binary: the distribution's generated main and every
# package of the root module (the custom components).
# Files embedded into the binary (the UI, its dashboard) count as sources too.
GO_SOURCES := $(shell find . -name '*.go' -not -name '*_test.go' -not -path './.tools/*' -not -path './bin/*' 2>/dev/null) go.mod go.sum $(DIST)/go.mod $(DIST)/go.sum \
	$(shell find extension/tenantqueryextension/dashboards extension/tenantqueryextension/eventsui extension/tenantqueryextension/alertsui extension/tenantqueryextension/internal/vmui/dist -type f 2>/dev/null)

.PHONY: all build gpu-check loadgen store logstore alerting modules e2e readpath vmui screenshot bench nvmlsim system package packaging-test generate check-generate check-versions certs test unit smoke lint vet golangci tools demo bench clean

all: build

## build: compile bin/otelcol-gpu (incremental through the Go build cache)
build: $(OTELCOL) $(BIN)/usage

$(OTELCOL): $(GO_SOURCES) $(call GLIBC_STUBS,amd64)/start.o
	@mkdir -p $(BIN)
	cd $(DIST) && go build $(call GO_BUILD_FLAGS,amd64) -o $(OTELCOL) .

# The same build with its symbol table (not stripped): make bench profiles the
# agent's resident executable pages by package with it. -s and -w drop only
# sections that are never loaded, so the loaded layout is the shipped one's.
$(BUILD)/bench/otelcol-gpu.syms: $(GO_SOURCES) $(call GLIBC_STUBS,amd64)/start.o
	@mkdir -p $(BUILD)/bench
	cd $(DIST) && go build $(subst -s -w ,,$(call GO_BUILD_FLAGS,amd64)) -o $(abspath $@) .

## gpu-check: build bin/gpu-check, which compares the nvml receiver with nvidia-smi on a GPU machine
gpu-check: $(GPU_CHECK)

$(GPU_CHECK): $(GO_SOURCES) $(call GLIBC_STUBS,amd64)/start.o
	@mkdir -p $(BIN)
	go build $(call GO_BUILD_FLAGS,amd64) -o $(GPU_CHECK) ./cmd/gpu-check

## loadgen: build bin/loadgen, agent-shaped OTLP load (and a counting sink) for the e2e tests and make bench
loadgen: $(LOADGEN)

$(LOADGEN): $(GO_SOURCES)
	@mkdir -p $(BIN)
	go build -trimpath -o $(LOADGEN) ./cmd/loadgen

## store: install VictoriaMetrics single-node ($(VICTORIA_METRICS_VERSION)), the demo's and the e2e tests' store
store: $(VM)

$(VM):
	GOBIN=$(TOOLS) CGO_ENABLED=0 go install github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@$(VICTORIA_METRICS_VERSION)

## logstore: install VictoriaLogs ($(VICTORIA_LOGS_VERSION)), the store of GPU events (XID log records) for the demo and the e2e tests
logstore: $(VL)

$(VL):
	GOBIN=$(TOOLS) CGO_ENABLED=0 go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$(VICTORIA_LOGS_VERSION)

## alerting: install vmalert ($(VICTORIA_METRICS_VERSION)) and Alertmanager ($(ALERTMANAGER_VERSION)), the alert engines of the tenants' GPU alerts, for the demo and the e2e and read-path tests
alerting: $(VMALERT) $(ALERTMANAGER)

$(VMALERT):
	GOBIN=$(TOOLS) CGO_ENABLED=0 go install github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert@$(VICTORIA_METRICS_VERSION)

$(ALERTMANAGER):
	GOBIN=$(TOOLS) CGO_ENABLED=0 go install github.com/prometheus/alertmanager/cmd/alertmanager@$(ALERTMANAGER_VERSION)

## package: .deb and .rpm for amd64 and arm64 in dist/ (arm64: cgo cross-compiled with Debian's gcc-aarch64-linux-gnu)
package: $(NFPM) $(BIN)/linux-amd64/otelcol-gpu $(BIN)/linux-arm64/otelcol-gpu $(BIN)/linux-amd64/otelcol-gpu-usage $(BIN)/linux-arm64/otelcol-gpu-usage
	@mkdir -p $(DISTDIR)
	for arch in amd64 arm64; do \
		sed -e "s|\$${ARCH}|$$arch|g" -e "s|\$${VERSION}|$(VERSION)|g" -e "s|\$${BINARY}|$(BIN)/linux-$$arch/otelcol-gpu|g" \
			-e "s|\$${USAGE_BINARY}|$(BIN)/linux-$$arch/otelcol-gpu-usage|g" \
			packaging/nfpm.yaml > $(DISTDIR)/nfpm-$$arch.yaml; \
		for fmt in deb rpm; do $(NFPM) package --config $(DISTDIR)/nfpm-$$arch.yaml --packager $$fmt --target $(DISTDIR)/; done; \
	done

$(BIN)/linux-amd64/otelcol-gpu: $(OTELCOL)
	@mkdir -p $(@D)
	cp $(OTELCOL) $@

# The usage report for the packages: pure Go, static (no cgo, so no glibc).
$(BIN)/linux-%/otelcol-gpu-usage: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=0 GOOS=linux GOARCH=$* go build -trimpath -ldflags "-s -w" -o $@ ./cmd/usage

$(BIN)/linux-arm64/otelcol-gpu: $(GO_SOURCES) $(call GLIBC_STUBS,arm64)/start.o
	@mkdir -p $(@D)
	cd $(DIST) && GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc go build $(call GO_BUILD_FLAGS,arm64) -o $@ .

$(call GLIBC_STUBS,amd64)/start.o: $(GLIBC_BASELINE_SRC)
	scripts/glibc-stubs.sh gcc amd64 $(@D)

$(call GLIBC_STUBS,arm64)/start.o: $(GLIBC_BASELINE_SRC)
	@command -v aarch64-linux-gnu-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu; }
	scripts/glibc-stubs.sh aarch64-linux-gnu-gcc arm64 $(@D)

## packaging-test: build the packages and check them (contents, glibc baseline, the arm64 binary under qemu, an install run as the unit's user, units, configs, deploy manifests)
packaging-test: package $(VM) $(VL) $(VMALERT) $(ALERTMANAGER)
	@command -v qemu-aarch64 >/dev/null || { apt-get update -qq && apt-get install -y -qq qemu-user; }
	OTELCOL_GPU_DIST=$(DISTDIR) VERSION=$(VERSION) go test -count=1 -tags $(GO_TAGS),system ./test/packaging/...

$(NFPM):
	GOBIN=$(TOOLS) go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

## nvmlsim: the simulated libnvidia-ml.so.1, and its variant without $(NVMLSIM_OMIT)
nvmlsim: $(NVMLSIM) $(NVMLSIM_OLD)

$(NVMLSIM): test/nvmlsim/nvmlsim.c go.mod
	@mkdir -p $(@D)
	gcc $(NVMLSIM_CFLAGS) -I$(NVML_H_DIR) -o $@ $< -lm -lpthread

$(NVMLSIM_OLD): test/nvmlsim/nvmlsim.c go.mod Makefile
	@mkdir -p $(@D)
	printf '{\n  global: *;\n  local: %s;\n};\n' "$$(echo $(NVMLSIM_OMIT) | sed 's/ /; /g')" > $(@D)/omit.map
	gcc $(NVMLSIM_CFLAGS) -I$(NVML_H_DIR) -Wl,--version-script=$(@D)/omit.map -o $@ $< -lm -lpthread

## generate: regenerate cmd/otelcol-gpu from builder-config.yaml
generate: $(BUILDER)
	$(BUILDER) --config builder-config.yaml --skip-compilation

## check-generate: fail if the committed cmd/otelcol-gpu differs from what the builder writes
check-generate: generate
	@if ! git diff --exit-code --stat -- $(DIST); then \
		echo "cmd/otelcol-gpu is out of date with builder-config.yaml: run 'make generate' and commit" >&2; exit 1; fi

## vmui: refresh the read path's embedded UI (vmui) from VictoriaMetrics $(VICTORIA_METRICS_VERSION) in the module cache; commit the result
VMUI_DIST := extension/tenantqueryextension/internal/vmui/dist
vmui:
	dir=$$(go mod download -json github.com/VictoriaMetrics/VictoriaMetrics@$(VICTORIA_METRICS_VERSION) | sed -n 's/^\s*"Dir": "\(.*\)",$$/\1/p'); \
		test -n "$$dir"; rm -rf $(VMUI_DIST); mkdir -p $(VMUI_DIST); \
		cp -r $$dir/app/vmselect/vmui/index.html $$dir/app/vmselect/vmui/assets $$dir/app/vmselect/vmui/manifest.json \
			$$dir/app/vmselect/vmui/config.json $$dir/app/vmselect/vmui/robots.txt $(VMUI_DIST)/; \
		cp $$dir/LICENSE $(VMUI_DIST)/../LICENSE; chmod -R u+w $(VMUI_DIST) $(VMUI_DIST)/../LICENSE

## certs: development CA, gateway and agent certificates in .certs (loopback only)
certs: $(CERTS)/ca.pem

$(CERTS)/ca.pem:
	go run ./cmd/devcerts -dir $(CERTS)

## test: everything CI runs (.ci/run): version pins, lint, unit, smoke, system, e2e and read-path tests, packages, generate drift
# Two builds that no test before the packaging test needs, golangci-lint and
# the arm64 distribution, run in the background at the lowest CPU priority:
# they get only the CPU the tests leave idle (the system, end-to-end and
# read-path tests mostly wait on their processes), so the tests run as they
# would alone and a cold run is shorter. Lowest priority is nice 19 in a
# session of their own whose autogroup is at nice 19 too: where the kernel
# groups tasks by session (sched_autogroup, on in this machine's kernel), a process's
# nice weighs only within its session, and a session of its own would
# otherwise get as much CPU as the tests' (measured with busy loops sharing
# one core: 2% for a session whose autogroup is at nice 19; SCHED_IDLE got
# 40% even inside the same session).
# Their output is in $(BUILD)/background-builds.log; a failure there fails test.
test: check-versions
	@mkdir -p $(BUILD); \
	setsid sh -c 'echo 19 >/proc/self/autogroup 2>/dev/null; exec nice -n 19 "$$@"' background \
		$(MAKE) --no-print-directory $(GOLANGCI_LINT) $(BIN)/linux-arm64/otelcol-gpu >$(BUILD)/background-builds.log 2>&1 & bg=$$!; \
	trap 'kill -- -$$bg 2>/dev/null || true' EXIT; trap 'exit 130' INT TERM; \
	echo "make test: building golangci-lint and the arm64 distribution in the background at nice 19 (log: $(BUILD)/background-builds.log)"; \
	$(MAKE) --no-print-directory vet unit smoke system e2e readpath || exit 1; \
	echo "make test: waiting for the background builds"; \
	wait $$bg || { tail -n 50 $(BUILD)/background-builds.log >&2; echo "make test: a background build failed (golangci-lint or arm64): $(BUILD)/background-builds.log" >&2; exit 1; }; \
	$(MAKE) --no-print-directory golangci packaging-test check-generate

## check-versions: every collector module in both go.mod files at the one pinned release
check-versions:
	@bad=$$(grep -hE '^\s+(go.opentelemetry.io/collector|github.com/open-telemetry/opentelemetry-collector-contrib)[/ ]' go.mod $(DIST)/go.mod \
		| grep -vE ' ($(OTELCOL_VERSION)|$(OTELCOL_STABLE_VERSION))( |$$)' || true); \
		if [ -n "$$bad" ]; then echo "collector modules off the pinned release ($(OTELCOL_VERSION)/$(OTELCOL_STABLE_VERSION)):" >&2; echo "$$bad" >&2; exit 1; fi

unit:
	go test -race -count=1 ./...

smoke: $(OTELCOL) $(GPU_CHECK) $(LOADGEN) $(BIN)/gwbench nvmlsim
	OTELCOL_GPU_BIN=$(OTELCOL) GPU_CHECK_BIN=$(GPU_CHECK) LOADGEN_BIN=$(LOADGEN) GWBENCH_BIN=$(BIN)/gwbench NVMLSIM_LIB=$(NVMLSIM) go test -count=1 -tags $(GO_TAGS),system -run . ./test/smoke/...

## system: the real binary on the simulated NVML library, every metric and every fault
system: $(OTELCOL) $(GPU_CHECK) nvmlsim
	OTELCOL_GPU_BIN=$(OTELCOL) GPU_CHECK_BIN=$(GPU_CHECK) NVMLSIM_LIB=$(NVMLSIM) NVMLSIM_OLD_LIB=$(NVMLSIM_OLD) NVMLSIM_OMITTED="$(NVMLSIM_OMIT)" \
		go test -count=1 -tags $(GO_TAGS),system ./test/system/...

## e2e: agents -> gateway -> VictoriaMetrics as real processes, with faults (test/e2e)
# One line per scenario: "e2e: <scenario> sent=... stored=... lost=... dup=...".
e2e: $(OTELCOL) $(LOADGEN) $(VM) $(VL) $(VMALERT) $(ALERTMANAGER) nvmlsim
	@mkdir -p $(BUILD)
	OTELCOL_GPU_BIN=$(OTELCOL) VICTORIA_METRICS_BIN=$(VM) VICTORIA_LOGS_BIN=$(VL) VMALERT_BIN=$(VMALERT) ALERTMANAGER_BIN=$(ALERTMANAGER) NVMLSIM_LIB=$(NVMLSIM) \
		go test -count=1 -tags $(GO_TAGS),e2e -timeout 15m -v ./test/e2e/... 2>&1 | tee $(BUILD)/e2e.log | grep -vE '^\s+20[0-9]{2}-'; \
		test $${PIPESTATUS[0]} -eq 0 || { echo "e2e failed: the processes' logs are in $(BUILD)/e2e.log" >&2; exit 1; }

## readpath: the customers' way in as they meet it: gateway + tenant_query + VictoriaMetrics, every read endpoint, the attacks, the limits, the UI in headless Chromium, the demo's printed curl lines (test/readpath)
readpath: $(OTELCOL) $(VM) $(VL) $(VMALERT) $(ALERTMANAGER) $(BIN)/demo nvmlsim
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; }
	OTELCOL_GPU_BIN=$(OTELCOL) VICTORIA_METRICS_BIN=$(VM) VICTORIA_LOGS_BIN=$(VL) VMALERT_BIN=$(VMALERT) ALERTMANAGER_BIN=$(ALERTMANAGER) DEMO_BIN=$(BIN)/demo NVMLSIM_LIB=$(NVMLSIM) go test -count=1 -tags $(GO_TAGS),e2e -timeout 10m -v ./test/readpath/... 2>&1 \
		| grep -vE '^\s+20[0-9]{2}-'; test $${PIPESTATUS[0]} -eq 0

## lint: gofmt, no test equipment in the binary, go vet and golangci-lint (pinned)
lint: vet golangci

## vet: gofmt, no test equipment in the binary, go vet (lint without golangci-lint)
vet:
	@bad=$$(gofmt -l $$({ git ls-files '*.go'; git ls-files --others --exclude-standard '*.go'; } | grep -v '^$(DIST)/')); \
		if [ -n "$$bad" ]; then echo "gofmt would change: $$bad" >&2; exit 1; fi
	@leaked=$$(cd $(DIST) && go list -deps . | grep '/internal/testkit/' || true); \
		if [ -n "$$leaked" ]; then echo "test equipment linked into otelcol-gpu: $$leaked" >&2; exit 1; fi
	@if ! diff -u $(MODULES) <($(LIST_MODULES)) >&2; then \
		echo "the modules linked into otelcol-gpu changed (above): every VM downloads and pages them; if that is meant, run 'make modules', say what it costs in BENCHMARKS.md (\"Binary and modules\") and commit both" >&2; exit 1; fi
	go vet ./...
	go vet -tags $(GO_TAGS),system ./test/...
	go vet -tags $(GO_TAGS),e2e ./test/...

## modules: write packaging/modules.txt, the modules linked into otelcol-gpu, which make vet holds the binary to
MODULES      := packaging/modules.txt
LIST_MODULES := cd $(DIST) && go list -deps -f '{{with .Module}}{{.Path}}{{end}}' . | sort -u
modules:
	$(LIST_MODULES) > $(CURDIR)/$(MODULES)

## golangci: golangci-lint (pinned; .golangci.yml)
golangci: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

tools: $(BUILDER) $(GOLANGCI_LINT)

$(BUILDER):
	GOBIN=$(TOOLS) go install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)

$(GOLANGCI_LINT):
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

## demo: store, event store, gateway (with the read path) + 2 agents x 8 simulated GPUs on loopback, live summary; Ctrl-C stops all (DEMO_AGENTS, DEMO_GPUS, DEMO_INTERVAL, DEMO_SECONDS)
demo: $(OTELCOL) $(VM) $(VL) $(VMALERT) $(ALERTMANAGER) nvmlsim $(BIN)/demo $(BIN)/usage
	VMALERT_BIN=$(VMALERT) ALERTMANAGER_BIN=$(ALERTMANAGER) $(BIN)/demo -otelcol $(OTELCOL) -store $(VM) -logstore $(VL) -nvmlsim $(dir $(NVMLSIM)) -certs $(CERTS)

## screenshot: run the demo ~3 min and photograph the store's UI with headless Chromium (Debian package) into docs/img/demo-vmui.png
screenshot: $(OTELCOL) $(VM) $(VL) nvmlsim $(BIN)/demo
	DEMO=$(BIN)/demo scripts/screenshot.sh -otelcol $(OTELCOL) -store $(VM) -logstore $(VL) -nvmlsim $(dir $(NVMLSIM)) -certs $(CERTS)

$(BIN)/demo: $(GO_SOURCES)
	@mkdir -p $(BIN)
	go build -trimpath -o $@ ./cmd/demo

# The usage report (CSV of an hour range; docs/billing.md, "A CSV export").
$(BIN)/usage: $(GO_SOURCES)
	@mkdir -p $(BIN)
	go build -trimpath -o $@ ./cmd/usage

## bench: gateway pipelines a/b/c and the durable gateway d against a and c (one summary table first: d/a, d/c, c/a, memory, the agent) on one pinned core, agent footprint, CPU profile, the read path (latency added, memory under 1,000 dashboard refreshes), the usage computation (10/100/1,000 tenants of full agents; 1,000 and 10,000 tenants x 10 VMs x 8 GPUs at a 10 s interval) and the Go micro-benchmarks (BENCHMARKS.md; ~55 min). BENCH_FLAGS=-quick for a look
BENCH_FLAGS ?=
bench: $(OTELCOL) $(BUILD)/bench/otelcol-gpu.syms $(BIN)/gwbench $(BIN)/readbench $(BIN)/usagebench $(VM) nvmlsim
	@mkdir -p $(BUILD)/bench
	go test -run '^$$' -bench . -benchmem ./receiver/... ./processor/... ./exporter/... ./extension/... ./internal/... 2>&1 \
		| tee $(BUILD)/bench/micro.txt | grep -E '^(Benchmark|ok|FAIL)'
	$(BIN)/gwbench -otelcol $(OTELCOL) -syms $(BUILD)/bench/otelcol-gpu.syms -nvmlsim $(dir $(NVMLSIM)) -out $(BUILD)/bench/report.json -profile $(BUILD)/bench/gateway-cpu.pprof $(BENCH_FLAGS) \
		| tee $(BUILD)/bench/report.txt
	$(BIN)/readbench -otelcol $(OTELCOL) -out $(BUILD)/bench/readpath.json | tee $(BUILD)/bench/readpath.txt
	$(BIN)/usagebench -store $(VM) -out $(BUILD)/bench/usage.json | tee $(BUILD)/bench/usage.txt
	$(BIN)/usagebench -store $(VM) -tenants 100 -step 1m -out $(BUILD)/bench/usage-dense.json | tee -a $(BUILD)/bench/usage.txt
	$(BIN)/usagebench -store $(VM) -tenants 1000,10000 -gpu-metrics 1 -host-series 2 -step 10s -out $(BUILD)/bench/usage-10k.json | tee -a $(BUILD)/bench/usage.txt

$(BIN)/usagebench: $(GO_SOURCES)
	@mkdir -p $(BIN)
	go build -trimpath -o $@ ./cmd/usagebench

$(BIN)/readbench: $(GO_SOURCES)
	@mkdir -p $(BIN)
	go build -trimpath -o $@ ./cmd/readbench

$(BIN)/gwbench: $(GO_SOURCES)
	@mkdir -p $(BIN)
	go build -trimpath -o $@ ./cmd/gwbench

clean:
	rm -rf $(BIN) $(BUILD) $(DISTDIR) $(CERTS) .demo
