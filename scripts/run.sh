#!/usr/bin/env bash
# The gateway's main job: `hotline serve` with its built-in defaults (SIP on
# 0.0.0.0:5060 UDP+TCP, call store in ./data/hotline.db, HTTP API on
# 127.0.0.1:8080). Extra arguments go to `hotline serve` (e.g. --config FILE).
# The 12345 IVR script arrives with the IVR issue; until then answered calls
# hear nothing and are recorded in the call store (`hotline calls`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec target/release/hotline serve "$@"
