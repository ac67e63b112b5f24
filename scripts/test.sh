#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (real whisper
# models, real audio from ../shared/fixtures/audio).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# Integration tests load whisper models; two at a time is what 2 cores carry.
cargo test --release --workspace -- --test-threads=2
