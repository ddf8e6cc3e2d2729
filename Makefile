# xcapd — two commands on a fresh Debian machine:
#   make run    start the server on the embedded default (sled under ./data, http://127.0.0.1:8080/xcap-root)
#   make test   run every test
# Both install the system packages they need (as root) or print the apt line to run.

APT_PACKAGES := libxml2-dev libclang-dev pkg-config libxml2-utils curl sip-tester kamailio
CARGO ?= cargo

.PHONY: run dev user test deps lint fmt bench check-schemas clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing system packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

run: deps
	$(CARGO) run --release --bin xcapd -- serve $(ARGS)

# Development mode: no authentication, the XUI in the URI is trusted (loopback only).
dev: deps
	XCAPD_AUTH=none $(CARGO) run --release --bin xcapd -- serve $(ARGS)

# Add a user while the server is stopped: make user XUI=sip:alice@example.com PASSWORD=secret [ROLE=admin]
user: deps
	XCAPD_PASSWORD='$(PASSWORD)' $(CARGO) run --release --bin xcapd -- user add '$(XUI)' $(if $(ROLE),--role $(ROLE),)

test: deps
	bash scripts/test.sh

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

check-schemas: deps
	bash scripts/check-schemas.sh

bench: deps
	bash scripts/bench.sh

clean:
	$(CARGO) clean
