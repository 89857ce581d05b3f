# hilbench: `make demo` runs the main job on a simulated bench; `make test` runs every test.
# Both install what they need first (Debian: apt-get as root).

GO       ?= go
GINKGO   := $(shell $(GO) env GOPATH)/bin/ginkgo
GINKGO_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)
BIN      := bin/hil
OUT      := hil-out
FUZZTIME ?= 10s

.PHONY: all deps build demo test vet specs bench fuzz soak station-bench clean

all: build

# System packages the simulator and the independent judges need, and the ginkgo CLI.
deps:
	@./scripts/deps.sh
	@test -x $(GINKGO) || $(GO) install github.com/onsi/ginkgo/v2/ginkgo@$(GINKGO_VERSION)

build:
	$(GO) build -o $(BIN) ./cmd/hil

# The main job on a simulated bench: provision, verify, reboot, factory reset, verify again.
demo: deps build
	@./scripts/demo.sh $(BIN) $(OUT)/demo

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum not tidy (go mod tidy -diff):"; $(GO) mod tidy -diff; exit 1; }

# Every test: unit tests with the race detector (the specs run in one process, signing with
# SoftDAK), the crash campaign (kill -9 of hil provision; without the race detector, which only
# slows its processes), and the specs again as parallel Ginkgo processes signing with a virtual
# YubiKey through pcscd and one signing agent that all processes share. Each signer path, one
# process and parallel processes all run; a SoftDAK run in parallel processes or a YubiKey run in
# one would repeat them (with SoftDAK every process has a bench and key of its own, so parallel
# processes share nothing).
# Most test packages wait on simulated devices more than they compute, so two packages per core
# run at once (go test's default is one). The crash campaign (CPU-bound) and the YubiKey specs
# (mostly waiting) plug their virtual YubiKeys into different vpcd readers, so they run side by
# side; so does harness/bench without the race detector, for its 4 MiB parses, which skip under it.
test: deps vet
	$(GO) test -race -count=1 -p $$(( $$(nproc) * 2 )) ./...
	@{ $(GO) test -count=1 -run CrashCampaign ./cmd/hil && $(GO) test -count=1 ./harness/bench; } & tail=$$!; \
	echo "$(GINKGO) --procs=3 --race ./specs -- --signer=yubikey (beside the crash campaign)"; \
	$(GINKGO) --procs=3 --race ./specs -- --signer=yubikey --out=$(CURDIR)/$(OUT)/specs-parallel-yubikey; specs=$$?; \
	wait $$tail; crash=$$?; \
	[ $$specs -eq 0 ] || echo "make test: the YubiKey specs failed (exit $$specs)"; \
	[ $$crash -eq 0 ] || echo "make test: the crash campaign or harness/bench without -race failed (exit $$crash)"; \
	[ $$specs -eq 0 ] && [ $$crash -eq 0 ]

specs: deps
	$(GINKGO) -v ./specs

# Every fuzz target (each `func Fuzz` in the tree, found by scripts/fuzz.sh) in turn, each for
# $(FUZZTIME): make fuzz FUZZTIME=10m. Seed corpora and regression inputs are in testdata/fuzz.
fuzz:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

# Benchmarks: figures for the closing notes (never timed assertions in tests).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./harness/... ./targets/...
	./scripts/bench-issuance.sh
	./scripts/bench-cycle.sh $(BIN)

# The nightly soak on a simulated bench: 8 ACS devices and 4 ACK modules, power cuts and 1e-4 line
# noise, SOAK_CYCLES cycles (default 1,000; scripts/soak.sh). Counters and duration at the end.
soak: deps build
	@./scripts/soak.sh $(BIN) $(OUT)/soak

# The end-of-line station on simulated slots (scripts/station-bench.sh): DUTs per hour with 16
# slots and SoftDAK against the slots' own bound, and the station's peak RSS with 32 slots.
station-bench: deps build
	@./scripts/station-bench.sh $(BIN)

clean:
	rm -rf bin $(OUT)
