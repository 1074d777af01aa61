# rethinkdb-agent: build, test and run.
# `make test` is what CI runs (.ci/run); keep it complete and fast.

GO      ?= go
BIN     := bin
PKGS    := $(shell $(GO) list ./... | grep -v /e2e)
export CGO_ENABLED ?= 0

.PHONY: all build test unit e2e vet fmt-check bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

vet: fmt-check
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Unit tests run with the race detector (it needs cgo).
unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 $(PKGS)

# End-to-end scenarios: against rethinkdb-sim by default, against a real
# server when RETHINKDB_BIN=/path/to/rethinkdb is set.
e2e: build
	RETHINKDB_SIM=$(CURDIR)/$(BIN)/rethinkdb-sim RETHINKDB_AGENT_BIN=$(CURDIR)/$(BIN)/rethinkdb-agent \
		$(GO) test -count=1 -timeout 20m ./e2e/...

test: vet unit e2e

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
