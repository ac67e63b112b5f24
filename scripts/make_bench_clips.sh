#!/usr/bin/env bash
# Build fixed-length benchmark clips (3 s, 10 s, 30 s; zh and en) from the
# shared speech fixtures.
#
#   scripts/make_bench_clips.sh OUTDIR
#
# Env: FIXTURES  source directory (default /work/shared/fixtures/audio)
#
# Output: OUTDIR/{zh,en}_{3,10,30}s.wav, 16 kHz mono s16 PCM, exactly the
# nominal length (source clips are concatenated, padded with trailing
# silence and cut to length), plus OUTDIR/clips.tsv (file, language,
# duration_s, sources, transcript). The transcript column is the
# concatenation of the source transcripts; every clip contains its sources
# whole, except zh_3s which is zh_cosyvoice_prompt with its silent lead-in and
# tail (0.2 s / ~0.3 s) trimmed.
#
# Deterministic and idempotent: no dither (-D), fixed inputs, each clip written
# to a temp file and renamed; re-running reproduces byte-identical files.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUT=$1
SRC=${FIXTURES:-/work/shared/fixtures/audio}
MANIFEST=$SRC/manifest.tsv

command -v sox >/dev/null || { echo "sox not found" >&2; exit 1; }
[[ -f $MANIFEST ]] || { echo "no manifest at $MANIFEST (set FIXTURES)" >&2; exit 1; }
mkdir -p "$OUT"

FMT=(-D -V1)                      # no dither, quiet
OFMT=(-r 16000 -c 1 -b 16 -e signed-integer -t wav)

transcript() {  # transcript of fixture file $1 (from manifest)
    awk -F'\t' -v f="$1" 'NR > 1 && $1 == f { print $5; found = 1 } END { exit !found }' "$MANIFEST"
}

TSV_TMP=$(mktemp "$OUT/.clips.tsv.XXXXXX")
trap 'rm -f "$TSV_TMP" "$OUT"/.clip.*.wav' EXIT
printf 'file\tlanguage\tduration_s\tsources\ttranscript\n' >"$TSV_TMP"

# make NAME LANG SECONDS [--trim START] SRC1 [SRC2 ...]
make() {
    local name=$1 lang=$2 secs=$3; shift 3
    local pre=()
    if [[ ${1:-} == --trim ]]; then pre=(trim "$2" "$secs"); shift 2; fi
    local inputs=() text="" s sep=""
    [[ $lang == en ]] && sep=" "
    for s in "$@"; do
        [[ -f $SRC/$s.wav ]] || { echo "missing $SRC/$s.wav" >&2; exit 1; }
        inputs+=("$SRC/$s.wav")
        text+="${text:+$sep}$(transcript "$s.wav")"
    done
    local tmp="$OUT/.clip.$name.wav"
    # concatenate -> (optional leading trim) -> pad with silence -> cut to exact length
    sox "${FMT[@]}" "${inputs[@]}" "${OFMT[@]}" "$tmp" "${pre[@]}" pad 0 "$secs" trim 0 "$secs"
    mv -f "$tmp" "$OUT/$name.wav"
    local dur
    dur=$(soxi -D "$OUT/$name.wav")
    printf '%s\t%s\t%s\t%s\t%s\n' "$name.wav" "$lang" "$dur" "$(IFS=+; echo "$*")" "$text" >>"$TSV_TMP"
    printf '%-10s %8.3f s  <- %s\n' "$name.wav" "$dur" "$*"
}

make zh_3s  zh 3  --trim 0.2 zh_cosyvoice_prompt                       # speech 0.26-3.17 s
make zh_10s zh 10 zh_aishell1_S0724W0121 zh_funasr_asr_example         # 9.828 s + pad
make zh_30s zh 30 zh_aishell1_S0724W0121 zh_funasr_asr_example zh_cosyvoice_prompt \
                  zh_funasrnano_rag_chemistry zh_funasrnano_rag_history # 28.068 s + pad
make en_3s  en 3  en_librivox_sas_0880                                 # 2.990 s + pad
make en_10s en 10 en_librivox_sas_0920 en_librivox_sas_0930            # 9.340 s + pad
make en_30s en 30 en_jfk en_librivox_sas_0870 en_librivox_sas_0890 en_librivox_sas_0920  # 29.450 s + pad

mv -f "$TSV_TMP" "$OUT/clips.tsv"
