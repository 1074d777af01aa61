# rethinkdb-agent: build, test and run.
# `make test` is what CI runs (.ci/run); keep it complete and fast.

GO      ?= go
BIN     := bin
PKGS    := $(shell $(GO) list ./... | grep -v /e2e)
export CGO_ENABLED ?= 0

# Docker: `docker compose` when the plugin is there, else docker-compose (v1).
COMPOSE    ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
IMAGE      ?= rethinkdb-agent:2.4.4
TEST_IMAGE ?= rethinkdb-agent-test:dev
SCALE      ?= 3

.PHONY: all build test unit e2e vet lint fmt-check bench clean image image-test up down

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

lint: vet
	@if command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; then \
		$(COMPOSE) -f compose.yaml config -q && echo "compose.yaml: ok"; fi
	@if command -v kubectl >/dev/null 2>&1; then \
		kubectl kustomize docs/kubernetes >/dev/null && echo "docs/kubernetes: renders (offline; --dry-run=client needs an API server)"; fi

# The image users run: the official rethinkdb:2.4.4 image plus the agent.
# It needs a registry (golang and rethinkdb base images).
image:
	docker build -f docker/Dockerfile -t $(IMAGE) .

# The test image: FROM scratch, binaries built here, no registry needed.
image-test:
	mkdir -p $(BIN)/image-test
	CGO_ENABLED=0 $(GO) build -o $(BIN)/image-test/rethinkdb-agent ./cmd/rethinkdb-agent
	CGO_ENABLED=0 $(GO) build -o $(BIN)/image-test/rethinkdb ./cmd/rethinkdb-sim
	docker build -f docker/test.Dockerfile -t $(TEST_IMAGE) $(BIN)/image-test

# A cluster of $(SCALE): `make up`, `make up SCALE=5`, `make down`.
# RETHINKDB_IMAGE=$(TEST_IMAGE) runs the test image (after make image-test).
up:
	$(COMPOSE) up -d --scale rethinkdb=$(SCALE)

down:
	$(COMPOSE) down

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
