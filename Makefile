# callgate: `make run` starts a gateway with embedded defaults, `make test` runs every test.
GO      ?= go
BIN     ?= bin/callgate
PKGS    ?= ./...
APT_PKGS = sip-tester prometheus wrk iproute2 systemd chromium baresip-core python3

.PHONY: run build test deps vet fmt bench bench-deps bench-quick conformance fuzz clean vendor-web screenshots

build:
	$(GO) build -o $(BIN) ./cmd/callgate

# make run faces agents on 127.0.0.1:5070 (outbound calls) unless CALLGATE_SIP_AGENTS_ADDR says otherwise.
# The agent listener on 5070, sandbox numbers' outbound calls to a local
# "PSTN" on 5080 (SIPp in the README's walk-through), and MD5 challenged
# first for SIPp 3.6's digest (each overridable from the environment).
run: build
	CALLGATE_SIP_AGENTS_ADDR=$${CALLGATE_SIP_AGENTS_ADDR-127.0.0.1:5070} \
	CALLGATE_SANDBOX_TERMINATION_URI=$${CALLGATE_SANDBOX_TERMINATION_URI-sip:127.0.0.1:5080} \
	CALLGATE_SIP_AGENTS_DIGEST_ALGORITHMS=$${CALLGATE_SIP_AGENTS_DIGEST_ALGORITHMS-MD5,SHA-256} \
	./$(BIN) serve

# Debian packages the tests and benchmarks use (SIPp, promtool, wrk, ip netns,
# systemd-analyze, chromium for the console's browser tests, baresip, python3
# for the independent signature checks), each installed only when its binary
# is missing.
deps:
	@missing=""; \
	for c in sipp:sip-tester promtool:prometheus wrk:wrk ip:iproute2 systemd-analyze:systemd chromium:chromium baresip:baresip-core python3:python3; do \
	  command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { $$SUDO apt-get update >/dev/null && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; }; \
	fi
	$(GO) mod download

test: deps
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

vet:
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff

fmt:
	gofmt -w .

# Short fuzz runs of every fuzz target (seeds live under testdata/fuzz).
FUZZTIME ?= 20s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  d=$$(dirname $$f); \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$d $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$d; \
	  done; \
	done

# Go benchmarks (purchase, search, routing, SIP, webhooks, media), then the
# load harnesses: SIPp vs Kamailio, wrk on webhooks, the RTP relay.
# provisioning's scale benchmarks store 1,000,000 numbers once (about two
# minutes; CALLGATE_BENCH_NUMBERS=N for fewer) and purchase on one node
# and on a 3-node JetStream cluster; bench/media/run.sh ends with the
# largest call count within 1 ms added p99 ("LADDER:").
bench-deps: deps
	@command -v kamailio >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio >/dev/null; }

bench: build bench-deps
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./provisioning/
	$(GO) test -run '^$$' -bench . -benchmem ./routing/ ./gateway/sip/ ./gateway/webhook/ ./gateway/media/
	bench/webhook/run.sh
	bench/media/run.sh
	CALLS=250,500,1000 bench/media/run.sh -srtp
	bench/sip/run.sh --callgate $(BIN)

bench-quick: build bench-deps
	CALLGATE_BENCH_NUMBERS=100000 $(GO) test -run '^$$' -bench . -benchtime 200ms -benchmem -timeout 30m ./provisioning/ ./routing/
	bench/sip/run.sh --quick --callgate $(BIN)

# RFC 4475 torture messages against a gateway in a loopback-only network namespace.
conformance: build
	conformance/run.sh

# Refresh the console's vendored htmx and Pico CSS (with their licences)
# from their npm packages; HTMX_VERSION / PICO_VERSION pick the release.
vendor-web:
	console/vendor.sh

# A PNG of every console page at 1280 px and at a 390 px phone width, in
# docs/console/ (headless chromium; `make deps` installs it).
screenshots:
	CALLGATE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -timeout 10m -run '^TestScreenshots$$' ./console/

clean:
	rm -rf bin
