#!/usr/bin/env bash
# Capacity curve of live transcripts: N concurrent calls of continuous real speech
# against `hotline serve` with [asr] on (base, zh, caller side only), one fresh gateway
# per N, and the same utterances decoded by faster-whisper as the peer.
#
# The speech: the zh clips of the shared fixtures (manifest.tsv) at 8 kHz, in manifest
# order, cycled, with a 0.8-1.0 s gap (seeded) after each one so the 600 ms endpointer
# closes every utterance; clips are added while they end by HOLD_S - 2.5 s, then
# silence to HOLD_S + 5 s. So every call, whatever N, has the same utterances and each
# is closed by the endpointer before the caller hangs up (no final is cut by the BYE).
# It is played as µ-law RTP by SIPp (benches/sipp/asr_uac.xml, play_pcap_audio), every
# call from its start, each held HOLD_S seconds. PHASES says when calls start:
#   step    N calls, RATE per second: every call speaks the same utterance within
#           N/RATE s of the others, so their finals come in bursts of N (the worst case).
#   spread  2N calls, N every HOLD_S seconds (SIPp -r N -rp HOLD_S), at most N up at once:
#           from HOLD_S to 2 x HOLD_S exactly N calls are up, each at a different point
#           of the track, as independent callers are. Latency and CPU are taken over
#           that window only (finals whose end of utterance falls in it).
#
# Per N (columns of the table):
#   calls ok/fail  SIPp's successful calls / failed calls + records not answered or not
#                  ended by the caller's BYE + records missing
#   finals         finals stored + finals that decoded to nothing (metrics) / expected;
#                  expected = N x utterances per call (utterances are numbered 0..K-1 per
#                  call channel with no gaps, K = max over this run's calls and the N=1
#                  reference of the highest utterance + 1)
#   lost           expected - (stored + empty): finals that never came back; must be 0
#   dropped        hotline_asr_finals_dropped_total (the pool's memory guard); must be 0
#   final p50/p95/max  stored_at - eou_at over every stored final (ms): eou_at is when
#                  the endpointer closed the utterance and queued the final, stored_at
#                  when the row was written (queue wait + decode + store)
#   decode p50     decode_ms (whisper time of the final) p50
#   partials pub/shed  partials published on the live feed / shed by the pool (replaced,
#                  superseded by the final, too old, over capacity); stale = decoded but
#                  came back after their utterance's final (not published)
#   gw CPU         the gateway's utime+stime over the plateau (from SETTLE_S after the last
#                  call started to 5 s before the first call ends), % of one core; sipp
#                  the same for SIPp; peak RSS = the gateway's VmHWM at the end
#   drain s        after SIPp ended: until the pool was idle (every queued final decoded)
#   rtp loss%      lost / (rx + lost) over the calls' RTP statistics (SIPp starved by
#                  whisper would show here)
#
# Then the peer (needs N=1 in CALLS, or `benches/asr_load.sh peer RUN_DIR/n1`): the N=1
# call's caller-side finals, cut from the call's recording (left channel = exactly the
# 8 kHz audio the transcript stream got), upsampled to 16 kHz with fw_bench.py's FIR,
# with the stream's padding (200 ms before, not before the previous final's padded end;
# 300 ms after). Per-utterance decode time of:
#   - hotline in the gateway: decode_ms of those finals (while the other worker decoded
#     partials of the same call);
#   - hotline's engine alone: `hotline eval --no-vad` on each slice (same model file,
#     beam FINAL_BEAM, temperature fallback, encoder window sized to the audio, as the
#     gateway's finals), PEER_THREADS threads, median of PEER_REPEAT runs;
#   - faster-whisper int8 on the same CT2 weights the ggml base was converted from
#     (fw_bench.py segments: beam FINAL_BEAM, temperature fallback, timestamps on, no VAD),
#     same threads and repeats.
# The ratio columns are faster-whisper's time over hotline's at the same thread count
# (above 1: hotline faster).
#
#   benches/asr_load.sh                               # N = 1 2 4 8 16 24, 60 s calls
#   CALLS=1 HOLD_S=30 benches/asr_load.sh             # a quick look
#   MODEL=base FINAL_BEAM=5 benches/asr_load.sh       # f16 weights, beam-5 finals
#   WORKERS=1 THREADS=2 benches/asr_load.sh
#   benches/asr_load.sh peer target/bench-asr/RUN/n1  # the peer alone, on a kept N=1 run
#
# Raw data per step under OUT (default target/bench-asr/<time>): config, gateway log,
# SIPp stat/errors, metrics, data/hotline.db, result.json; the N=1 recording is kept for the
# peer. whisper and SIPp share the machine: run nothing else while measuring.
# Needs: a release build (copied to OUT at the start, so a rebuild during the run does
# not change it), sipp (sip-tester), sox, python3, curl; for the peer .venv-bench
# (faster-whisper) and the CT2 weights (hotline model ct2 base).
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-"1 2 4 8 16 24"}
HOLD_S=${HOLD_S:-60}
RATE=${RATE:-2}            # new calls per second (PHASES=step)
PHASES=${PHASES:-step}     # step or spread (above)
SETTLE_S=${SETTLE_S:-5}    # after the last call started, before the CPU sample
MODEL=${MODEL:-base-q8_0}
WORKERS=${WORKERS:-0}      # 0 = one per core
THREADS=${THREADS:-0}      # 0 = all cores (the pool keeps to its thread budget)
FINAL_BEAM=${FINAL_BEAM:-1}
PARTIAL_MS=${PARTIAL_MS:-1000}
DRAIN_TIMEOUT_S=${DRAIN_TIMEOUT_S:-1200}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-300}
PEER=${PEER:-1}            # run the faster-whisper peer after the curve (needs N=1)
PEER_THREADS=${PEER_THREADS:-"1 2"}
PEER_REPEAT=${PEER_REPEAT:-3}
FIXTURES=${FIXTURES:-$(pwd)/../shared/fixtures/audio}
CT2=${CT2:-${HOTLINE_MODEL_DIR:-$HOME/.cache/hotline/models}/ct2-base}
PY=${PY:-.venv-bench/bin/python}
SCENARIO=$(pwd)/benches/sipp/asr_uac.xml
SRC_BIN=${HOTLINE_BIN:-target/release/hotline}

# --------------------------------------------------------------------------------------
# The peer: faster-whisper on the N=1 call's utterances.
peer() {
    local dir=$1
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/data/hotline.db" ] || { echo "peer: no $dir/data/hotline.db" >&2; exit 1; }
    [ -x "$PY" ] || { echo "peer: no $PY (make setup / .venv-bench)" >&2; exit 1; }
    [ -f "$CT2/model.bin" ] || { echo "peer: no CT2 weights in $CT2 (hotline model ct2 base)" >&2; exit 1; }
    # The run's own binary and model.
    local bin model gw_threads pdir t
    bin=$(dirname "$dir")/hotline
    [ -x "$bin" ] || bin=$SRC_BIN
    model=$(sed -n 's/^model = "\(.*\)"$/\1/p' "$dir/hotline.toml")
    gw_threads=$(sed -n 's/.*live transcripts on.* threads=\([0-9]*\).*/\1/p' "$dir/gateway.log" | head -1)
    pdir="$dir/peer"
    mkdir -p "$pdir/slices"
    # The 16 kHz caller track, the slices as JSON (faster-whisper) and as WAVs with a
    # manifest (hotline eval).
    "$PY" - "$dir" "$pdir" <<'EOF'
import json, os, sqlite3, sys, wave
import numpy as np
sys.path.insert(0, "benches")
import fw_bench
d, p = sys.argv[1], sys.argv[2]
db = sqlite3.connect(os.path.join(d, "data", "hotline.db"))
calls = db.execute("SELECT id, recording FROM calls WHERE recording IS NOT NULL").fetchall()
if len(calls) != 1:
    sys.exit(f"peer: want one recorded call in {d}, found {len(calls)}")
cid, rec = calls[0]
with wave.open(rec, "rb") as w:
    assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000), rec
    st = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
left = st[:, 0].astype(np.float64)
up = fw_bench.upsample_8k_to_16k(left, 2 * len(left))
pcm = np.clip(np.rint(up), -32768, 32767).astype("<i2")
def write(path, x):
    with wave.open(path, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(x.tobytes())
wav16 = os.path.join(p, "caller16k.wav")
write(wav16, pcm)
total_ms = len(pcm) * 1000 // 16000
segs = db.execute("SELECT utterance, start_ms, end_ms, decode_ms, text FROM segments "
                  "WHERE call_id = ? AND channel = 'caller' AND final = 1 ORDER BY utterance", (cid,)).fetchall()
out, prev_end = [], 0
man = ["file\tlanguage\ttranscript"]
for utt, s, e, dec, text in segs:
    # The stream's padding: 200 ms before (not before the previous final's audio), 300 after.
    lo = max(s - 200, prev_end)
    hi = min(e + 300, total_ms)
    prev_end = hi
    out.append({"file": wav16, "start_ms": lo, "end_ms": hi, "utterance": utt,
                "hotline_decode_ms": dec, "hotline_text": text})
    f = os.path.join(p, "slices", f"u{utt:03d}.wav")
    write(f, pcm[lo * 16:hi * 16])
    man.append(f"{f}\tzh\t{text}")
json.dump(out, open(os.path.join(p, "segments.json"), "w"), ensure_ascii=False, indent=1)
open(os.path.join(p, "slices.tsv"), "w").write("\n".join(man) + "\n")
print(f"peer: {len(out)} utterances of call {cid}, recording {rec}", file=sys.stderr)
EOF
    for t in $PEER_THREADS; do
        echo "peer: hotline eval (the engine alone), beam $FINAL_BEAM, $t thread(s)" >&2
        "$bin" eval "$pdir/slices.tsv" --model "$model" --beam "$FINAL_BEAM" --threads "$t" --no-vad \
            --repeat "$PEER_REPEAT" --json >"$pdir/hotline_t$t.json" 2>"$pdir/hotline_t$t.log" ||
            { cat "$pdir/hotline_t$t.log" >&2; exit 1; }
        echo "peer: faster-whisper int8, beam $FINAL_BEAM, $t thread(s)" >&2
        "$PY" benches/fw_bench.py segments "$pdir/segments.json" "$CT2" --compute-type int8 \
            --beam "$FINAL_BEAM" --cpu-threads "$t" --language zh --fallback --repeat "$PEER_REPEAT" \
            >"$pdir/fw_t$t.jsonl" 2>"$pdir/fw_t$t.log" || { cat "$pdir/fw_t$t.log" >&2; exit 1; }
    done
    echo "peer commands (T in: $PEER_THREADS):"
    echo "  $bin eval $pdir/slices.tsv --model $model --beam $FINAL_BEAM --threads T --no-vad --repeat $PEER_REPEAT --json"
    echo "  $PY benches/fw_bench.py segments $pdir/segments.json $CT2 --compute-type int8 --beam $FINAL_BEAM --cpu-threads T --language zh --fallback --repeat $PEER_REPEAT"
    python3 - "$pdir" "$PEER_THREADS" "$model" "${gw_threads:-?}" "$PEER_REPEAT" <<'EOF'
import json, os, statistics, sys
p, threads, model, gwt, rep = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5]
segs = json.load(open(os.path.join(p, "segments.json")))
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(-(-q * len(v) // 1)) - 1))] if v else float("nan")
fw, hot, texts = {}, {}, {}
for t in threads:
    rows = [json.loads(l) for l in open(os.path.join(p, f"fw_t{t}.jsonl")) if l.startswith("{")]
    rows = [r for r in rows if not r.get("summary")]
    assert len(rows) == len(segs), (len(rows), len(segs))
    fw[t] = [r["seconds"] * 1000 for r in rows]
    texts[t] = [r["text"] for r in rows]
    clips = {os.path.basename(c["file"]): c for c in json.load(open(os.path.join(p, f"hotline_t{t}.json")))["clips"]}
    hot[t] = [clips[f"u{s['utterance']:03d}.wav"]["seconds"] * 1000 for s in segs]
gw = [s["hotline_decode_ms"] for s in segs]
dur = [s["end_ms"] - s["start_ms"] for s in segs]
print(f"\nPer-utterance decode time of the N=1 call's {len(segs)} finals (padded audio {statistics.median(dur)/1000:.2f} s "
      f"median, {sum(dur)/1000:.1f} s total); standalone rows: median of {rep} runs after a warm-up.\n")
print("| engine | threads | median ms | p95 ms | mean ms | fw int8 / this (medians, same threads) | median per-utterance fw / this |")
print("|---|---|---|---|---|---|---|")
def row(name, t, ms):
    ref = fw.get(t)
    if ref:
        r1 = f"{statistics.median(ref) / statistics.median(ms):.2f}x"
        r2 = f"{statistics.median([a / b for a, b in zip(ref, ms)]):.2f}x"
    else:
        r1 = r2 = "-"
    print(f"| {name} | {t} | {statistics.median(ms):.0f} | {pct(ms, .95):.0f} | {statistics.mean(ms):.0f} | {r1} | {r2} |")
row(f"hotline {model}, in the gateway (decode_ms of the call's finals)", gwt, gw)
for t in threads:
    row(f"hotline {model}, engine alone (hotline eval --no-vad)", t, hot[t])
for t in threads:
    row("faster-whisper int8 (fw_bench.py segments)", t, fw[t])
with open(os.path.join(p, "texts.tsv"), "w") as f:
    f.write("utterance\tstart_ms\tend_ms\tgateway_ms\tgateway_text\t" + "\t".join(f"fw_t{t}" for t in threads) + "\n")
    for i, s in enumerate(segs):
        f.write(f"{s['utterance']}\t{s['start_ms']}\t{s['end_ms']}\t{s['hotline_decode_ms']}\t{s['hotline_text']}\t"
                + "\t".join(texts[t][i] for t in threads) + "\n")
EOF
}

if [ "${1:-}" = peer ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 peer RUN_DIR/n1" >&2; exit 2; }
    peer "$2"
    exit 0
fi

# --------------------------------------------------------------------------------------
[ -x "$SRC_BIN" ] || { echo "no $SRC_BIN: cargo build --release --bin hotline" >&2; exit 1; }
for c in sipp sox python3 curl; do
    command -v "$c" >/dev/null || { echo "no $c (scripts/setup.sh)" >&2; exit 1; }
done
[ -f "$FIXTURES/manifest.tsv" ] || { echo "no $FIXTURES/manifest.tsv" >&2; exit 1; }
case "$PHASES" in step | spread) ;; *) echo "PHASES is step or spread" >&2; exit 2 ;; esac
OUT=${OUT:-target/bench-asr/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/media"
OUT=$(cd "$OUT" && pwd)
BIN="$OUT/hotline"
cp "$SRC_BIN" "$BIN"

gw_pid=""
sipp_pid=""
cleanup() {
    [ -n "$sipp_pid" ] && kill -TERM "$sipp_pid" 2>/dev/null || true
    if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -TERM "$gw_pid" 2>/dev/null || true
        wait "$gw_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
host_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
hwm_mb() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
free_port() {
    python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass'
}
metric() { awk -v k="hotline_$2" '$1 == k { print $2 + 0; f = 1 } END { if (!f) print 0 }' "$1"; }
sipp_stat() {
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i } END { print $c + 0 }' "$1"
}

# ---- the speech track and its pcap ----------------------------------------------------
python3 - "$FIXTURES" "$OUT/media" "$HOLD_S" <<'EOF'
import csv, json, os, random, struct, subprocess, sys, wave
fx, out, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = list(csv.DictReader(open(os.path.join(fx, "manifest.tsv"), encoding="utf-8"), delimiter="\t",
                           quoting=csv.QUOTE_NONE))
clips = []
for r in rows:
    if r["language"] != "zh":
        continue
    raw = subprocess.run(["sox", "-D", os.path.join(fx, r["file"]), "-r", "8000", "-c", "1", "-b", "16",
                          "-e", "signed-integer", "-t", "raw", "-"], check=True, capture_output=True).stdout
    clips.append((r["file"], raw))
rng = random.Random(1)
R = 8000
speech_end = int((hold - 2.5) * R)
pcm = bytearray(b"\0\0" * (R // 2))  # 0.5 s lead-in
placed, i, misses = [], 0, 0
while misses < len(clips):
    name, raw = clips[i % len(clips)]
    i += 1
    n = len(raw) // 2
    if len(pcm) // 2 + n > speech_end:
        misses += 1
        continue
    misses = 0
    start = len(pcm) // 2
    pcm += raw
    placed.append({"file": name, "start_ms": start * 1000 // R, "end_ms": (start + n) * 1000 // R})
    pcm += b"\0\0" * int(rng.uniform(0.8, 1.0) * R)
total = int((hold + 5) * R)
pcm = pcm[: 2 * total] + b"\0\0" * max(0, total - len(pcm) // 2)
with wave.open(os.path.join(out, "track.wav"), "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(R); w.writeframes(bytes(pcm))
ulaw = subprocess.run(["sox", os.path.join(out, "track.wav"), "-t", "raw", "-e", "u-law", "-b", "8", "-"],
                      check=True, capture_output=True).stdout
# pcap: Ethernet/IPv4/UDP frames 20 ms apart, as tests/common/media.rs writes them.
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
f = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
base = 1_700_000_000 * 1_000_000
for k in range(len(ulaw) // 160):
    payload = ulaw[160 * k:160 * k + 160]
    rtp = struct.pack("!BBHII", 0x80, (0x80 if k == 0 else 0), (1000 + k) & 0xFFFF, (8000 + 160 * k) & 0xFFFFFFFF,
                      0x5EEC0001) + payload
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k & 0xFFFF, 0x4000, 64, 17, 0,
                               bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    frame = bytes([0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]) + bytes(ip) + udp
    t = base + 20_000 * k
    f += struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame
open(os.path.join(out, "caller.pcap"), "wb").write(f)
json.dump(placed, open(os.path.join(out, "placed.json"), "w"), indent=1)
sp = sum(p["end_ms"] - p["start_ms"] for p in placed)
print(f"speech track: {len(placed)} clips, {sp / 1000:.1f} s of speech, last ends at "
      f"{placed[-1]['end_ms'] / 1000:.1f} s, pcap {len(ulaw) / R:.1f} s", file=sys.stderr)
EOF

# ---- one step per N ---------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
asr_label="hotline model=$MODEL workers=$WORKERS threads=$THREADS beam=$FINAL_BEAM"
echo "machine: $(nproc) cores, $cpu_model; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: CALLS=\"$CALLS\" HOLD_S=$HOLD_S PHASES=$PHASES RATE=$RATE MODEL=$MODEL WORKERS=$WORKERS THREADS=$THREADS FINAL_BEAM=$FINAL_BEAM PARTIAL_MS=$PARTIAL_MS benches/asr_load.sh"
echo "binary: $SRC_BIN ($(stat -c %y "$SRC_BIN" | cut -d. -f1), git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- asr gateway src Cargo.lock 2>/dev/null || echo '+dirty tree')); raw data: $OUT"
echo
echo "| N | calls ok/fail | finals (stored+empty)/expected | lost | dropped | final p50 ms | final p95 ms | final max ms | decode p50 ms | partials pub/shed/stale | gw CPU | sipp CPU | gw peak RSS | drain s | rtp loss% |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
kref=0
for n in $CALLS; do
    dir="$OUT/n$n"
    mkdir -p "$dir"
    echo "$asr_label" >"$dir/asr.txt"
    ln -sfn "$OUT/media" "$dir/media"
    cat >"$dir/hotline.toml" <<EOF
[sip]
max_calls = 1000

[media]
greeting = ""
record = true

[asr]
enabled = true
model = "$MODEL"
language = "zh"
channels = ["caller"]
workers = $WORKERS
threads = $THREADS
final_beam = $FINAL_BEAM
partial_interval_ms = $PARTIAL_MS
end_silence_ms = 600
EOF
    "$BIN" serve --sip 127.0.0.1:0 --http 127.0.0.1:0 --data "$dir/data" --config "$dir/hotline.toml" \
        >"$dir/ready" 2>"$dir/gateway.log" &
    gw_pid=$!
    for _ in $(seq 600); do
        grep -q '^hotline ready' "$dir/ready" 2>/dev/null && break
        kill -0 "$gw_pid" 2>/dev/null || { cat "$dir/gateway.log" >&2; exit 1; }
        sleep 0.1
    done
    target=$(sed -n 's/.* udp:\([0-9.]*:[0-9]*\).*/\1/p' "$dir/ready")
    http=$(sed -n 's/.* http:\([0-9.]*:[0-9]*\).*/\1/p' "$dir/ready")
    [ -n "$target" ] && [ -n "$http" ] || { echo "gateway not ready" >&2; cat "$dir/ready" "$dir/gateway.log" >&2; exit 1; }
    if [ "$PHASES" = spread ]; then
        # N calls per HOLD_S: from HOLD_S on, one starts as one ends.
        ncalls=$((2 * n)) ramp=$HOLD_S rate_args="-r $n -rp $((HOLD_S * 1000))"
        span=$((3 * HOLD_S))
    else
        ramp=$(( (n + RATE - 1) / RATE ))
        ncalls=$n rate_args="-r $RATE" span=$((HOLD_S + ramp))
    fi
    t_start_ms=$(date +%s%3N)
    (
        cd "$dir"
        # shellcheck disable=SC2086
        exec sipp -sf "$SCENARIO" $rate_args -m "$ncalls" -l "$n" -d $((HOLD_S * 1000)) \
            -nostdin -i 127.0.0.1 -p "$(free_port)" -mp "$(free_port)" \
            -trace_stat -stf "$dir/stat.csv" -fd 5 \
            -trace_err -error_file "$dir/errors.log" \
            -trace_screen -screen_file "$dir/screen.log" \
            -timeout $((span + 60))s -timeout_error \
            "$target" >"$dir/sipp.out" 2>"$dir/sipp.err"
    ) &
    sipp_pid=$!
    sleep $((ramp + SETTLE_S))
    sample=$(( HOLD_S - SETTLE_S - 5 ))
    [ "$PHASES" = step ] && sample=$(( HOLD_S - ramp - SETTLE_S - 5 ))
    [ "$sample" -lt 5 ] && sample=5
    g0=$(cpu_ticks "$gw_pid"); s0=$(cpu_ticks "$sipp_pid"); t0=$(date +%s.%N)
    sleep "$sample"
    g1=$(cpu_ticks "$gw_pid"); s1=$(cpu_ticks "$sipp_pid"); t1=$(date +%s.%N)
    rc=0
    wait "$sipp_pid" || rc=$?
    sipp_pid=""
    tend=$(date +%s.%N)
    # Until the pool is idle: every job accepted is done, shed or dropped (the calls'
    # last finals are queued at the BYE: give the media tasks a moment).
    sleep 2
    drained=0
    for _ in $(seq "$DRAIN_TIMEOUT_S"); do
        curl -sf "http://$http/metrics" >"$dir/metrics.txt" || true
        q=$(metric "$dir/metrics.txt" asr_jobs_queued_total)
        d=$(metric "$dir/metrics.txt" asr_jobs_done_total)
        sh=$(metric "$dir/metrics.txt" asr_partials_shed_total)
        dr=$(metric "$dir/metrics.txt" asr_finals_dropped_total)
        hits=$(metric "$dir/metrics.txt" asr_speculative_hits_total)
        ssh=$(metric "$dir/metrics.txt" asr_speculative_shed_total)
        qf=$(metric "$dir/metrics.txt" asr_queued_finals)
        # A final answered by its speculative decode, and a speculative job let go
        # before it ran, are the other two ways a job ends.
        if [ "$qf" -eq 0 ] && [ "$q" -eq $((d + sh + dr + hits + ssh)) ]; then drained=1; break; fi
        sleep 1
    done
    drain=$(awk -v a="$tend" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    sleep 1   # the results thread hands the last final to the store
    curl -sf "http://$http/metrics" >"$dir/metrics.txt" || echo "metrics scrape failed" >&2
    rss=$(hwm_mb "$gw_pid")
    kill -TERM "$gw_pid" 2>/dev/null || true
    stopped=0
    for _ in $(seq $((STOP_TIMEOUT_S * 10))); do
        kill -0 "$gw_pid" 2>/dev/null || { stopped=1; break; }
        sleep 0.1
    done
    if [ "$stopped" = 0 ]; then
        echo "gateway did not exit ${STOP_TIMEOUT_S} s after SIGTERM; killed" >&2
        kill -KILL "$gw_pid" 2>/dev/null || true
    fi
    gw_rc=0
    wait "$gw_pid" || gw_rc=$?
    gw_pid=""
    sok=$(sipp_stat "$dir/stat.csv" 'SuccessfulCall(C)')
    sfail=$(sipp_stat "$dir/stat.csv" 'FailedCall(C)')
    gcpu=$(awk -v g=$((g1 - g0)) -v t="$tck" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * g / t / (b - a) }')
    scpu=$(awk -v g=$((s1 - s0)) -v t="$tck" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * g / t / (b - a) }')
    # whisper.cpp logs "failed to encode/decode" at ERROR for a compute the pool aborted
    # (a partial that gives its cores up to a final): counted apart from the rest.
    aborts=$(grep -c -E 'whisper_full_with_state: failed to (encode|decode)' "$dir/gateway.log" || true)
    logerr=$(grep -E ' (WARN|ERROR) |panick' "$dir/gateway.log" |
        grep -c -v -E 'whisper_full_with_state: failed to (encode|decode)' || true)
    # spread: the window with N calls up, as epoch ms (eou_at is epoch ms).
    win_lo=0 win_hi=0
    [ "$PHASES" = spread ] && win_lo=$((t_start_ms + HOLD_S * 1000)) win_hi=$((t_start_ms + 2 * HOLD_S * 1000))
    python3 - "$dir" "$n" "$kref" "$sok" "$sfail" "$gcpu" "$scpu" "$rss" "$drain" "$drained" "$rc" "$gw_rc" "$logerr" "$stopped" "$aborts" "$ncalls" "$win_lo" "$win_hi" <<'EOF' >"$dir/row.txt"
import json, os, sqlite3, sys
(d, n, kref, sok, sfail, gcpu, scpu, rss, drain, drained, sipp_rc, gw_rc, logerr, stopped, aborts,
 ncalls, win_lo, win_hi) = sys.argv[1:]
n, kref, sok, sfail, ncalls, win_lo, win_hi = int(n), int(kref), int(sok), int(sfail), int(ncalls), int(win_lo), int(win_hi)
m = {}
for line in open(os.path.join(d, "metrics.txt")):
    if line.startswith("hotline_"):
        k, v = line.split()[:2]
        m[k[len("hotline_"):]] = float(v)
g = lambda k: int(m.get(k, 0))
db = sqlite3.connect(os.path.join(d, "data", "hotline.db"))
calls = db.execute("SELECT id, status, answered_at, ended_at, end_reason, rtp_stats FROM calls").fetchall()
bad = sum(1 for c in calls if c[1] != 200 or not c[2] or c[4] != "caller-bye")
missing = max(0, ncalls - len(calls))
rx = lost = late = 0
for c in calls:
    r = json.loads(c[5]) if c[5] else {}
    rx += r.get("rx_packets", 0); lost += r.get("lost", 0); late += r.get("late", 0)
segs = db.execute("SELECT s.call_id, s.utterance, s.eou_at, s.stored_at, s.decode_ms, s.end_ms, c.answered_at "
                  "FROM segments s JOIN calls c ON c.id = s.call_id WHERE s.channel = 'caller' AND s.final = 1").fetchall()
per_call = {}
for s in segs:
    per_call.setdefault(s[0], []).append(s[1])
k = max([kref] + [max(u) + 1 for u in per_call.values()])
if win_hi:
    segs = [s for s in segs if s[2] is not None and win_lo <= s[2] < win_hi]
lat = sorted(s[3] - s[2] for s in segs if s[2] is not None)
dec = sorted(s[4] for s in segs if s[4] is not None)
# From the end of the speech (answer + end_ms) to stored: adds the endpointer's 600 ms
# and the post-pad wait to the latency above.
lat_speech = sorted(s[3] - (s[6] + s[5]) for s in segs if s[6])
def pct(v, q):
    if not v:
        return None
    i = -(-q * len(v) // 1)
    return v[min(len(v) - 1, max(0, int(i) - 1))]
stored, empty = g("asr_finals_stored_total"), g("asr_finals_empty_total")
expected = ncalls * k
res = {
    "n": n, "calls": ncalls, "window_ms": [win_lo, win_hi] if win_hi else None, "sipp_ok": sok, "sipp_failed": sfail, "records": len(calls), "records_bad": bad,
    "records_missing": missing, "failed": sfail + bad + missing,
    "utterances_per_call": k, "expected_finals": expected, "finals_in_latency": len(segs),
    "finals_stored": stored, "finals_empty": empty, "finals_lost": expected - stored - empty,
    "finals_dropped": g("asr_finals_dropped_total"),
    "per_call_stored_min": min((len(u) for u in per_call.values()), default=0),
    "per_call_stored_max": max((len(u) for u in per_call.values()), default=0),
    "latency_ms": {"p50": pct(lat, .5), "p95": pct(lat, .95), "max": lat[-1] if lat else None, "n": len(lat)},
    "speech_end_to_stored_ms": {"p50": pct(lat_speech, .5), "p95": pct(lat_speech, .95),
                                "max": lat_speech[-1] if lat_speech else None},
    "decode_ms": {"p50": pct(dec, .5), "p95": pct(dec, .95), "max": dec[-1] if dec else None},
    "partials_published": g("asr_partials_published_total"), "partials_shed": g("asr_partials_shed_total"),
    "partials_stale": g("asr_partials_stale_total"), "decode_errors": g("asr_decode_errors_total"),
    "jobs_queued": g("asr_jobs_queued_total"), "jobs_done": g("asr_jobs_done_total"),
    "speculative_hits": g("asr_speculative_hits_total"), "speculative_shed": g("asr_speculative_shed_total"),
    "speculative_wasted": g("asr_speculative_wasted_total"),
    "gw_cpu_pct": int(gcpu), "sipp_cpu_pct": int(scpu), "gw_peak_rss_mb": int(rss),
    "drain_s": float(drain), "drained": drained == "1", "sipp_rc": int(sipp_rc), "gateway_rc": int(gw_rc),
    "gateway_exited": stopped == "1", "gateway_log_warn_error": int(logerr),
    "whisper_aborted_computes": int(aborts),
    "rtp_rx": rx, "rtp_lost": lost, "rtp_late": late,
}
json.dump(res, open(os.path.join(d, "result.json"), "w"), indent=1)
L = res["latency_ms"]
f = lambda v: "-" if v is None else str(v)
loss = 100.0 * lost / max(1, rx + lost)
print(f"| {n} | {sok}/{res['failed']} | {stored}+{empty}/{expected} | {res['finals_lost']} | {res['finals_dropped']} | "
      f"{f(L['p50'])} | {f(L['p95'])} | {f(L['max'])} | {f(res['decode_ms']['p50'])} | "
      f"{res['partials_published']}/{res['partials_shed']}/{res['partials_stale']} | {gcpu}% | {scpu}% | "
      f"{rss} MB | {drain}{'' if drained == '1' else ' (not drained)'} | {loss:.3f} |")
print(k)
EOF
    head -1 "$dir/row.txt"
    k=$(sed -n 2p "$dir/row.txt")
    [ "$n" = 1 ] && kref=$k
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); s=r["speech_end_to_stored_ms"]
print("  N=%d: %d utterances per call, stored per call %d..%d, sipp exit %d, gateway exit %d%s, log WARN/ERROR lines %d (+%d aborted whisper computes), decode errors %d, rtp late %d, speech end -> stored p50/p95 %s/%s ms, speculative hits/shed/wasted %d/%d/%d" % (
  r["n"], r["utterances_per_call"], r["per_call_stored_min"], r["per_call_stored_max"], r["sipp_rc"], r["gateway_rc"],
  "" if r["gateway_exited"] else " (killed)", r["gateway_log_warn_error"], r["whisper_aborted_computes"], r["decode_errors"], r["rtp_late"], s["p50"], s["p95"],
  r["speculative_hits"], r["speculative_shed"], r["speculative_wasted"]))' \
        "$dir/result.json" >&2
    # Recordings are ~1.5 MB a call-minute: keep the N=1 one (the peer cuts from it).
    [ "$n" = 1 ] || [ -n "${KEEP:-}" ] || rm -rf "$dir/data/recordings"
done

if [ "$PEER" = 1 ] && [ "$PHASES" = spread ]; then
    echo "peer: skipped (it cuts the one N=1 call of PHASES=step)" >&2
elif [ "$PEER" = 1 ] && [ -d "$OUT/n1" ]; then
    echo
    peer "$OUT/n1"
fi
