#!/usr/bin/env bash
# RTF of `hotline transcribe`'s decode path (tiny.en, base) on 3 s / 10 s / 30 s clips, with and
# without encoder-window sizing (audio_ctx), next to faster-whisper int8 and float32 on the
# same weights and clips. Every run: beam 1, 2 threads, no VAD (one decode per clip), no
# temperature fallback, median of 3 timed runs after a warm-up. Prints a markdown table.
#
#   bash benches/rtf.sh [OUTDIR]        (after `make setup`; takes ~10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bench-rtf}
mkdir -p "$OUT"
HOTLINE=target/release/hotline
PY=.venv-bench/bin/python
CACHE=${HOTLINE_MODEL_DIR:-$HOME/.cache/hotline/models}
FIXTURES=${FIXTURES:-$(pwd)/../shared/fixtures/audio} bash scripts/make_bench_clips.sh "$OUT/clips" >/dev/null

# One manifest per clip so that every row is one clip.
rows=()
while IFS=$'\t' read -r file lang _rest; do
    [ "$file" = file ] && continue
    head -1 "$OUT/clips/clips.tsv" >"$OUT/clips/${file%.wav}.tsv"
    grep -P "^$file\t" "$OUT/clips/clips.tsv" >>"$OUT/clips/${file%.wav}.tsv"
    rows+=("$file:$lang")
done <"$OUT/clips/clips.tsv"

hot() { # model manifest extra-args... -> "rtf err"
    local m=$1 man=$2; shift 2
    "$HOTLINE" eval "$man" --model "$m" --beam 1 --threads 2 --no-vad --no-fallback --repeat 3 --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); c=d["clips"][0]; print("%.3f %.3f" % (c["seconds"]/c["audio_s"], c["error_rate"]))'
}
fw() { # ct2dir manifest compute-type -> "rtf err"
    "$PY" benches/fw_bench.py eval "$2" "$1" --compute-type "$3" --beam 1 --cpu-threads 2 --repeat 3 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"):
        d=json.loads(l); print("%.3f %.3f" % (d["rtf"], d.get("cer", d.get("wer"))))'
}

echo "| model | clip | hotline audio_ctx RTF (err) | hotline full window RTF (err) | faster-whisper int8 RTF (err) | faster-whisper f32 RTF (err) |"
echo "|---|---|---|---|---|---|"
for model in tiny.en base; do
    ct2="$CACHE/ct2-$model"
    for r in "${rows[@]}"; do
        file=${r%%:*}; lang=${r##*:}
        [ "$model" = tiny.en ] && [ "$lang" != en ] && continue
        man="$OUT/clips/${file%.wav}.tsv"
        a=$(hot "$model" "$man"); b=$(hot "$model" "$man" --full-window)
        c=$(fw "$ct2" "$man" int8); d=$(fw "$ct2" "$man" float32)
        fmt() { set -- $1; echo "$1 ($2)"; }
        echo "| $model | ${file%.wav} | $(fmt "$a") | $(fmt "$b") | $(fmt "$c") | $(fmt "$d") |"
    done
done
