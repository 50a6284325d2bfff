# espy — see README.md for the two commands a new user needs.

GO        ?= go
BIN       := bin/espy
SAMPLE    := testdata/sample.pcap
FUZZTIME  ?= 20s

.PHONY: all build run test deps lint bench bench-replay bench-accuracy bench-ike fuzz generate check-generate clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/espy

## run: replay the sample capture shipped in testdata/ and print verdicts.
run: build
	./$(BIN) replay --format table $(SAMPLE)

## deps: install the Debian packages and Go modules the tests need.
deps:
	./scripts/install-deps.sh

## test: install what the tests need, then run the whole suite.
test: deps check-generate
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

## bench: the Go benchmarks (per-packet cost, allocations, flow cache).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-replay: espy replay vs tshark (NULL heuristic on) vs tcpdump's read floor.
bench-replay: build
	./scripts/bench-replay.sh

## bench-accuracy: espy and tshark's NULL heuristic scored on ../shared/corpus.
bench-accuracy: build
	./scripts/bench-accuracy.sh

## bench-ike: IKE SAs/s with espy and with strongSwan's charon as responder,
## same load from espy ike bench, and the ratio (root; BENCH_IKE_ARGS=--help).
bench-ike: build
	./scripts/bench-ike.sh $(BENCH_IKE_ARGS)

## fuzz: a short run of each fuzz target.
fuzz:
	./scripts/fuzz-all.sh $(FUZZTIME)

## generate: rebuild the bpf2go output (needs clang and libbpf-dev).
generate:
	$(GO) generate ./ebpf/...

## check-generate: the committed bpf2go output must be what make generate
## builds from ebpf/xdp (CI runs it in make test).
check-generate: generate
	@git diff --exit-code -- ebpf/ || (echo "bpf2go output is stale: run make generate and commit" >&2; exit 1)

clean:
	rm -rf bin
