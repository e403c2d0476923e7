# etcdvisor: `make test` is what CI runs; `make bench` compares against plain etcd.
GO      ?= go
BIN     := bin
VERSION ?= v0.1.0-dev+$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/etcdvisor/etcdvisor/internal/version.Version=$(VERSION)

.PHONY: all build tools test fmt vet staticcheck unit e2e bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/etcdvisor ./cmd/etcdvisor

# Real etcd tools, pinned in tools/go.mod: etcd, etcdctl, etcdutl v3.7.3 and
# etcd's benchmark tool (only served from go.etcd.io/etcd/v3@v3.7.0).
tools:
	cd tools && $(GO) build -o ../$(BIN)/etcd go.etcd.io/etcd/server/v3
	cd tools && $(GO) build -o ../$(BIN)/etcdctl go.etcd.io/etcd/etcdctl/v3
	cd tools && $(GO) build -o ../$(BIN)/etcdutl go.etcd.io/etcd/etcdutl/v3
	cd tools && $(GO) build -o ../$(BIN)/benchmark go.etcd.io/etcd/v3/tools/benchmark

test: fmt vet staticcheck unit e2e

# gofmt from the Go that builds, so the check does not depend on PATH.
fmt:
	@files=$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$files" ]; then echo "gofmt -w these files:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

# Unit tests with the race detector; e2e skips itself under -short.
unit:
	$(GO) test -race -short -count=1 ./...

# e2e builds the real binary and runs real members on loopback.
e2e:
	$(GO) test -count=1 -timeout 20m ./e2e/...

bench: build tools
	$(GO) run ./bench -etcd $(BIN)/etcd -etcdvisor $(BIN)/etcdvisor -benchmark $(BIN)/benchmark
	$(GO) run ./bench -etcd $(BIN)/etcd -etcdvisor $(BIN)/etcdvisor -benchmark $(BIN)/benchmark -members 3 -tls
	$(GO) run ./bench -etcd $(BIN)/etcd -etcdvisor $(BIN)/etcdvisor -etcdctl $(BIN)/etcdctl -etcdutl $(BIN)/etcdutl -snapshot
	$(GO) run ./bench -etcd $(BIN)/etcd -etcdvisor $(BIN)/etcdvisor -starvation
	$(GO) run ./bench -etcd $(BIN)/etcd -etcdvisor $(BIN)/etcdvisor -membership

clean:
	rm -rf $(BIN)
