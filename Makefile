# Picket: build, run the bundled example, test, re-record goldens, benchmark.
# Every target installs what it needs on a fresh Debian machine first (`make deps`).

SWIFT        ?= swift
DEBIAN_DEPS  := iptables ipset libipset-dev libnetfilter-conntrack-dev libcurl4-openssl-dev iproute2 conntrack kmod python3 python3-yaml pkg-config openssl ca-certificates
NODE         ?= node-a
DEMO         ?= Fixtures/demo/input
# Debian's interpreter (python3-yaml is installed for it), else the first on PATH.
PYTHON       ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

.PHONY: all deps build run dry-run test fuzz fuzz-manifests fuzz-json golden bench clean

all: build

# Debian packages the build and the kernel tests use; installed only when missing.
deps:
	@missing=""; for p in $(DEBIAN_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run 'make deps' as root)"; exit 1; \
	  fi; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "a Swift 6 toolchain is required (swift not found)"; exit 1; }

build: deps
	$(SWIFT) build

# The main job, live (root): the test API server holding the bundled demo cluster, `picket daemon`
# for node-a of a network-namespace node, the reachability matrix before and after a policy
# change made through the API; everything removed on exit.
run: build
	$(PYTHON) demo/live-demo.py $$($(SWIFT) build --show-bin-path)/picket

# The rules node-a of the demo cluster enforces, printed (no root, no kernel).
dry-run: build
	$$($(SWIFT) build --show-bin-path)/picket dry-run --node $(NODE) --from $(DEMO)

# Unit, golden and executor tests, then the kernel suite on its own (its probes have short
# timeouts; it is not run beside the other suites on a small machine). Kernel checks need root;
# they are skipped loudly otherwise.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip KernelTests
	$(SWIFT) test --skip-build --filter KernelTests

# Many more random clusters and policies, each checked kernel vs evaluator (root). A failing
# case prints PICKET_FUZZ_SEED=... to replay it; FUZZ_SEED picks a new series.
# Then libFuzzer over the manifest decoder (fuzz-manifests), after libFuzzer over the JSON
# reader (fuzz-json).
FUZZ_CASES ?= 200
fuzz: deps fuzz-json
	$(SWIFT) build --build-tests
	PICKET_FUZZ_CASES=$(FUZZ_CASES) $(if $(FUZZ_SEED),PICKET_FUZZ_SEED=$(FUZZ_SEED)) $(SWIFT) test --skip-build --filter FuzzTests
	$(MAKE) fuzz-manifests

# libFuzzer (with AddressSanitizer) over manifest decoding, compiling and rendering, seeded with
# every Fixtures input: a crash, a multi-line diagnostic or a restore line outside Picket's
# chains and sets stops it, and the input is kept in .build-fuzz/artifacts/ (replay it by
# passing the file to the binary). Built apart (Fuzz/Package.swift, scratch .build-fuzz) so
# that a plain `swift build` never needs the fuzzer runtime.
FUZZ_SECONDS ?= 60
fuzz-manifests: deps
	@status=$$(mktemp); \
	{ $(SWIFT) build --package-path Fuzz --scratch-path .build-fuzz -c debug -Xswiftc -sanitize=fuzzer,address \
	  --product picket-fuzz-manifests 2>&1; echo $$? >"$$status"; } | grep -v "Cannot export local symbol"; \
	rc=$$(cat "$$status"); rm -f "$$status"; exit $$rc
	@corpus=$$(mktemp -d); trap 'rm -rf "$$corpus"' EXIT; \
	for f in Fixtures/*/input/*; do cp "$$f" "$$corpus/$$(echo "$$f" | tr / _)"; done; \
	mkdir -p .build-fuzz/artifacts; \
	.build-fuzz/debug/picket-fuzz-manifests -max_total_time=$(FUZZ_SECONDS) -timeout=10 -max_len=16384 \
	  -print_final_stats=1 -artifact_prefix=.build-fuzz/artifacts/ "$$corpus"

# libFuzzer over the JSON manifest path, seeded from every Fixtures input converted to JSON, for
# FUZZ_JSON_SECONDS; a crash leaves crash-* in .build-fuzz-json/findings and fails the target.
# Replay one with `picket-fuzz-json FILE` (normal build). Its own scratch path: the target is in
# the main package (a normal build makes it a seed writer and replayer).
FUZZ_JSON_SECONDS ?= 60
fuzz-json: deps
	$(SWIFT) build --product picket-fuzz-json
	rm -rf .build-fuzz-json/seeds && mkdir -p .build-fuzz-json/corpus .build-fuzz-json/findings
	$$($(SWIFT) build --show-bin-path)/picket-fuzz-json seeds .build-fuzz-json/seeds Fixtures
	$(SWIFT) build --scratch-path .build-fuzz-json -c release --product picket-fuzz-json -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xlinker --export-dynamic
	.build-fuzz-json/release/picket-fuzz-json -max_total_time=$(FUZZ_JSON_SECONDS) -max_len=65536 -timeout=10 \
	  -artifact_prefix=.build-fuzz-json/findings/ .build-fuzz-json/corpus .build-fuzz-json/seeds

# Re-record every golden file from the current compiler, then check them.
golden: deps
	-PICKET_RECORD=1 $(SWIFT) test --filter GoldenTests >/dev/null 2>&1
	$(SWIFT) test --filter GoldenTests
	@git status --short Fixtures

# Compile, apply, executor and decode figures for synthetic clusters (release build), informer
# sync time and store memory against the test API server (10k and 50k pods), the daemon process
# against it (10k; `picket-bench daemon --sizes 10k,50k` for both), then the data-path
# benchmark: ApacheBench between two pods with and without the rules of an 8,000-pod cluster.
bench: deps
	$(SWIFT) build -c release --product picket-bench
	$(SWIFT) build -c release --product picket
	$$($(SWIFT) build -c release --show-bin-path)/picket-bench
	$$($(SWIFT) build -c release --show-bin-path)/picket-bench informer
	$$($(SWIFT) build -c release --show-bin-path)/picket-bench daemon
	bash Benchmarks/dataplane/run.sh

clean:
	rm -rf .build
