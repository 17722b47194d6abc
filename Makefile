# deployhook. The two commands an operator or CI needs:
#   make demo   build, start a local PostgreSQL and Consul, walk the runbook
#   make test   vet, unit and integration tests against real services, fuzz smoke, cookbook spec
SHELL := /bin/bash
GO ?= go
FUZZEXECS ?= 100000
BIN := bin

.PHONY: all build deps consul test vet unit integration fuzz-smoke cookbook-test demo bench bench-validate bench-migrate soak clean man completion

all: build

# -buildvcs=true: --version and .done name the revision even where GOFLAGS
# turns VCS stamping off.
build:
	$(GO) build -buildvcs=true -o $(BIN)/deployhook ./cmd/deployhook

# Everything the tests and the demo run against, installed by the project's
# own files: PostgreSQL and runit (svlogd) from Debian, ruby for the cookbook
# spec, Consul 1.16.1 built from the pinned tools module into bin/consul.
deps:
	tools/postgres.sh
	tools/runit.sh
	tools/ruby.sh

consul:
	tools/consul/build.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

# Unit tests need nothing but Go: `go test ./...` runs them anywhere. The
# suites that need PostgreSQL, Consul or svlogd are behind the integration tag.
unit:
	$(GO) test -race -count=1 -timeout 5m ./...

integration: deps consul
	$(GO) test -race -count=1 -timeout 25m -tags integration ./...

fuzz-smoke:
	tools/fuzz-smoke.sh validate/dconf FuzzParse $(FUZZEXECS)
	tools/fuzz-smoke.sh migrate FuzzEscape $(FUZZEXECS)
	tools/fuzz-smoke.sh migrate/consulkv FuzzKVList $(FUZZEXECS)
	tools/fuzz-smoke.sh migrate/consulkv FuzzKVListConsul $(FUZZEXECS)

cookbook-test: deps
	cookbook/test.sh

test: vet integration fuzz-smoke cookbook-test

demo: deps consul build
	$(GO) run ./integration/demo

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./validate/... ./migrate/... ./runitlog/
	$(MAKE) bench-validate

# deployhook validate against the NATS config parser on a generated 2.8 MB
# cluster.conf, whole process and in process, with the targets of issue 11.
# Its own module (tools/validatebench) keeps NATS out of deployhook's go.mod.
bench-validate:
	cd tools/validatebench && $(GO) run . $(VALIDATE_BENCH_ARGS)

bench-migrate: deps consul build
	$(GO) run ./integration/benchmigrate $(BENCH_ARGS)

soak: deps consul
	SOAK=1 $(GO) test -race -count=1 -timeout 120m -tags integration ./integration/...
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=10m ./validate/dconf/
	$(GO) test -run=NONE -fuzz=FuzzEscape -fuzztime=10m ./migrate/
	$(GO) test -run=NONE -fuzz=^FuzzKVList$$ -fuzztime=10m ./migrate/consulkv/
	$(GO) test -run=NONE -fuzz=^FuzzKVListConsul$$ -fuzztime=10m ./migrate/consulkv/

# The man page and the shell completion scripts, generated from the command
# definitions (TestManPageCurrent fails when docs/deployhook.8 is stale).
man:
	$(GO) run ./cmd/deployhook man > docs/deployhook.8.tmp && mv docs/deployhook.8.tmp docs/deployhook.8

completion:
	$(GO) run ./cmd/deployhook completion bash > docs/deployhook.bash.tmp && mv docs/deployhook.bash.tmp docs/deployhook.bash
	$(GO) run ./cmd/deployhook completion zsh > docs/_deployhook.tmp && mv docs/_deployhook.tmp docs/_deployhook

clean:
	rm -rf $(BIN)/deployhook .demo
