# leakwatch — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
GOLANGCI_LINT_VERSION := v2.15.0
LEAKWATCH_FLAGS ?=
C_SOURCES := $(wildcard bpf/*.c bpf/*.h test/workloads/*.c test/workloads/*.cpp test/bench/loops/*.c)
export PATH := $(PATH):/usr/local/go/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install the Debian packages the build and tests need (as root)
	@./hack/install-deps.sh

.PHONY: generate
generate: deps ## rebuild the BPF objects and their Go bindings with clang
	cd pkg/tracer && $(GO) generate ./...

.PHONY: vmlinux
vmlinux: deps ## regenerate bpf/include/*/vmlinux.h from this kernel's BTF
	./hack/gen-vmlinux.sh

.PHONY: verify-generated
verify-generated: generate ## fail when the committed BPF output is stale
	@if ! git diff --quiet -- pkg/tracer || [ -n "$$(git ls-files --others --exclude-standard pkg/tracer)" ]; then \
		git status --short pkg/tracer; \
		echo "verify-generated: committed BPF output differs from 'make generate'; run it and commit the result" >&2; \
		exit 1; \
	fi

.PHONY: build
build: ## build bin/leakwatch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/leakwatch ./cmd/leakwatch

.PHONY: run
run: build ## build (Go only, no clang) and run the agent on this host (as root) on 127.0.0.1:9753; LEAKWATCH_FLAGS adds flags
	./$(BIN)/leakwatch run $(LEAKWATCH_FLAGS)

.PHONY: test
test: deps ## run every test; privileged ones need root
	$(GO) test -count=1 -timeout 25m ./...

.PHONY: test-cri
test-cri: deps ## only the tests against a real containerd (started privately by hack/containerd-private.sh) through CRI, as root
	LEAKWATCH_REQUIRE_PRIVILEGED=1 $(GO) test -count=1 -timeout 10m -run 'TestContainerdPodsThroughCRI|TestAgentRunsAsTheDaemonSetContainer' -v ./test/e2e

.PHONY: bench
bench: ## measure the tracer's cost on micro-loops, interleaved with and without it (as root)
	@LEAKWATCH_EXTRA_PACKAGES="redis-server redis-tools bpftrace" ./hack/install-deps.sh
	$(GO) run ./test/bench $(BENCH_FLAGS)

.PHONY: bench-detect
bench-detect: ## compare the leak detector with predict_linear and growth-% rules on 100 unseen seeds of the production family, test/corpus and the real traces
	$(GO) run ./test/benchdetect -production -seeds 100 -first-seed 1000 -corpus test/corpus -real test/corpus/real,test/corpus/real/second

.PHONY: $(BIN)/golangci-lint
$(BIN)/golangci-lint:
	@if ! [ -x $@ ] || ! $@ version 2>/dev/null | grep -q "$(GOLANGCI_LINT_VERSION:v%=%)"; then \
		echo "installing golangci-lint $(GOLANGCI_LINT_VERSION)"; \
		GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi

.PHONY: lint
lint: $(BIN)/golangci-lint deps ## golangci-lint, gofmt and clang-format
	./$(BIN)/golangci-lint run ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }
	clang-format --dry-run --Werror $(C_SOURCES)

.PHONY: fmt
fmt: ## format Go and C sources
	gofmt -w $$(git ls-files '*.go')
	clang-format -i $(C_SOURCES)

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)

# ---------------------------------------------------------------------------
# Deployment (deploy/): manifests, Helm chart, alerting rules, dashboard.
# ---------------------------------------------------------------------------
HELM_VERSION := v3.22.0

.PHONY: helm
helm: ## install helm into bin/ from the Go module proxy (a test tool, not in go.mod)
	@HELM_VERSION=$(HELM_VERSION) ./hack/install-helm.sh

.PHONY: deploy-generate
deploy-generate: ## embed deploy/prometheus/rules.yaml and the dashboard into the manifests and the chart
	./hack/gen-deploy.sh

.PHONY: deploy-check
deploy-check: deps helm ## check deploy/: promtool, strict decoding, DaemonSet policy, helm lint/template, dashboard queries
	$(GO) test -count=1 -timeout 5m -run '^Test(Promtool|Rules|Embedded|Manifests|DaemonSet|Helm|Dashboard)' ./test/deploy/

# test/deploy runs under `make test` too (its live test included); it needs helm.
test: helm

# ---------------------------------------------------------------------------
# Fuzzing: every Fuzz* target of the module, briefly, after its committed
# corpus (each package's testdata/fuzz/<Name>/). A failing input is written
# there too; commit it with the fix. Each input that finds new coverage is
# minimized first, for up to FUZZMINIMIZETIME: Go's default of 60s outlasts
# an 8s run (FuzzLoadObject's 4 KiB ELF inputs stalled 3-27s in it).
# A bare "context deadline exceeded" with no failing input written is a race
# in Go's fuzzing coordinator at the end of -fuzztime (golang/go#75804, fixed
# after go1.26; it failed FuzzParse twice in a row on a busy CI host): that
# run found nothing, so the target's seeds and committed corpus are replayed
# once more as a plain test and the target passes if they do.
# ---------------------------------------------------------------------------
FUZZTIME ?= 8s
FUZZMINIMIZETIME ?= 2s

.PHONY: fuzz
fuzz: ## run every Fuzz* target of the module for FUZZTIME each (default 8s)
	@set -euo pipefail; \
	targets=$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names = names " " $$1; next } /^ok / { n = split(names, a, " "); for (i = 1; i <= n; i++) print $$2, a[i]; names = "" }'); \
	[ -n "$$targets" ] || { echo "fuzz: no Fuzz targets found" >&2; exit 1; }; \
	while read -r pkg name; do \
		echo "== fuzz $$pkg $$name ($(FUZZTIME))"; \
		if out=$$($(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) "$$pkg" 2>&1); then echo "$$out"; continue; fi; \
		echo "$$out"; \
		if grep -q "context deadline exceeded" <<<"$$out" && ! grep -q "Failing input written" <<<"$$out"; then \
			echo "fuzz: $$name: go's fuzzing coordinator timed out at the end of -fuzztime (golang/go#75804; no input failed); replaying its corpus"; \
			$(GO) test -count=1 -run "^$$name\$$" "$$pkg" || exit 1; \
			continue; \
		fi; \
		exit 1; \
	done <<<"$$targets"
