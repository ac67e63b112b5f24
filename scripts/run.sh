#!/usr/bin/env bash
# The gateway's main job. Until the SIP signalling issue lands there is no `serve`:
# this transcribes the bundled demo clips with the default model (base), as a call's
# audio would be, and prints the transcripts.
set -euo pipefail
cd "$(dirname "$0")/.."
HOTLINE=target/release/hotline
echo "== Mandarin demo (fixtures/audio/demo_zh_aishell1.wav), base, through G.711:" >&2
"$HOTLINE" transcribe --model base --language zh --telephone fixtures/audio/demo_zh_aishell1.wav
echo "== English demo (fixtures/audio/demo_en_jfk.wav), tiny.en:" >&2
"$HOTLINE" transcribe --model tiny.en --language en --format srt fixtures/audio/demo_en_jfk.wav
