#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (real whisper
# models, real audio from ../shared/fixtures/audio).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# One test at a time: integration tests run whisper on every core, and two whisper
# processes on two cores spin against each other (ggml's thread barriers busy-wait).
cargo test --release --workspace -- --test-threads=1
