# hotline: the two commands are `make run` and `make test` (see README.md).
# Both run scripts/setup.sh first; it is idempotent and caches everything it fetches.

CARGO ?= cargo
HOTLINE := target/release/hotline

.PHONY: setup build run test lint bench clean

setup:
	bash scripts/setup.sh

build: setup

run: setup
	bash scripts/run.sh $(ARGS)

test: setup
	bash scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

bench: setup
	$(CARGO) bench --bench frontend

clean:
	$(CARGO) clean
