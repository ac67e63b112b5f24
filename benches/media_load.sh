#!/usr/bin/env bash
# Media load driver: concurrent G.711 calls with RTP both ways against `hotline serve`
# (release build, HTTP off, call store and recordings in a temporary directory), one
# fresh gateway per step. Every call gets what production calls get: the greeting played
# for the whole call (a ~60 s prompt made by repeating the welcome prompt), a stereo WAV
# recording, in-band DTMF detection on the caller's audio, RFC 4733 negotiated.
#
# The callers are SIPp (benches/sipp/media_uac.xml): each call streams µ-law speech
# (fixtures/audio/demo_en_jfk.wav, looped) with SIPp's rtp_stream for its whole duration
# and is held HOLD_S seconds; calls start at RATE per second up to N at once (-l N -m N).
# At the plateau the script samples, over SAMPLE_S seconds:
#   - CPU as % of one core: the gateway's (utime + stime from /proc/PID/stat), also per
#     call; SIPp's; "other" = the rest of the machine (/proc/stat busy minus both: the
#     kernel's loopback work, tcpdump, ss, anything else running); the gateway's RSS;
#   - the gateway's send pacing: tcpdump on lo captures the RTP of PACE_STREAMS of its
#     calls (source ports spread over the calls up); the inter-departure times of each
#     stream give p50/p99 and the p99 of |interval - 20 ms| (left empty without tcpdump).
# During the step, receive drops on the gateway's UDP sockets (ss -m, polled every 2 s).
# After the step (gateway stopped, store flushed) it reads the call records:
#   - loss% = sum(rtp.lost) / sum(rtp.rx_packets + rtp.lost); late = packets that came
#     after their playout time;
#   - rx_def% / tx_def%: packets the gateway should have received / sent (one per 20 ms
#     of the call) but did not: SIPp falling behind shows in the first, the gateway
#     falling behind real time in the second;
#   - rx_jit_ms: RFC 3550 interarrival jitter of SIPp's streams at the gateway, mean/max;
#   - failed: SIPp's FailedCall plus records not answered or not ended by the caller's
#     BYE (e.g. rtp-timeout), plus records missing.
# It stops after the first N with loss, late packets, deficits over 0.1%, socket drops
# or failed calls.
#
#   benches/media_load.sh                          # N = 100 250 500 750, 60 s calls
#   CALLS="50" HOLD_S=30 benches/media_load.sh     # a quick look
#   CALLS="1000 1500 2000" benches/media_load.sh   # towards the limit
#   NICE=-10 benches/media_load.sh                 # on a machine others use too
#
# SIPp (its rtp_stream threads) and the gateway share the machine's cores: run nothing
# else heavy while measuring. SIPp 3.6.1 sends every call's RTP from its one -mp port
# and never reads the gateway's RTP there (drops on SIPp's socket are expected).
# Build first: cargo build --release --bin hotline. Needs sipp (sip-tester, built with
# RTPSTREAM), sox, python3, ss (iproute2), and tcpdump for the pacing columns.
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-"100 250 500 750"}
RATE=${RATE:-25}         # new calls per second while ramping
HOLD_S=${HOLD_S:-60}     # call length (raised to ramp + 25 s when N / RATE needs it)
SAMPLE_S=${SAMPLE_S:-10} # plateau sampling window
SETTLE_S=${SETTLE_S:-5}  # after the last call started, before sampling
PACE_STREAMS=${PACE_STREAMS:-4}
# On a shared machine: run the gateway, SIPp and tcpdump at this nice level (e.g. -10,
# as root) so other users' work does not preempt them; empty = as started.
NICE=${NICE:-}
# SIPp's own nice level (default: NICE). E.g. NICE=-10 SIPP_NICE=5 lets the gateway
# preempt the load generator, closer to a gateway with a machine of its own.
SIPP_NICE=${SIPP_NICE:-$NICE}
# What every call gets; turn one off to see what it costs (RECORD=false INBAND_DTMF=false).
RECORD=${RECORD:-true}
INBAND_DTMF=${INBAND_DTMF:-true}
BIN=${HOTLINE_BIN:-target/release/hotline}
SCENARIO=benches/sipp/media_uac.xml
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --bin hotline" >&2; exit 1; }
command -v sipp >/dev/null || { echo "no sipp: scripts/setup.sh installs sip-tester" >&2; exit 1; }
command -v sox >/dev/null || { echo "no sox: scripts/setup.sh installs it" >&2; exit 1; }
have_tcpdump=1
command -v tcpdump >/dev/null || {
    have_tcpdump=0
    echo "no tcpdump (apt-get install tcpdump): pacing columns left empty" >&2
}
# Two sockets per call in the gateway, one per call in SIPp, plus files.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
gw_pid=""
sipp_pid=""
dump_pid=""
drops_pid=""
spid=""
cleanup() {
    for p in "$dump_pid" "$spid" "$sipp_pid" "$drops_pid"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
    done
    if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -TERM "$gw_pid" 2>/dev/null || true
        wait "$gw_pid" 2>/dev/null || true
    fi
    [ -n "${KEEP:-}" ] && { echo "kept $work" >&2; return; }
    rm -rf "$work"
}
trap cleanup EXIT

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Busy and total jiffies of the whole machine.
host_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# Polls `ss` every 2 s until $2 exists: the receive drops of each UDP socket of the
# gateway ($1) and of SIPp ($3, may be empty), keeping each socket's highest count (a
# call's sockets close with it); prints "gateway_drops sipp_drops" at the end.
sock_drops() {
    python3 - "$@" <<'EOF'
import os, re, subprocess, sys, time
gw, stop, sipp = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "")
seen = {}
def poll():
    out = subprocess.run(["ss", "-Huanmp"], capture_output=True, text=True).stdout
    owner = key = None
    for line in out.splitlines():
        m = re.search(r"pid=(\d+),", line)
        if m:
            owner, key = m.group(1), line.split()[3]
            continue
        d = re.search(r"skmem:\(.*\bd(\d+)\)", line)
        if d and owner in (gw, sipp):
            k = (owner, key)
            seen[k] = max(seen.get(k, 0), int(d.group(1)))
while not os.path.exists(stop):
    poll()
    time.sleep(2)
poll()
print(sum(v for (o, _), v in seen.items() if o == gw), sum(v for (o, _), v in seen.items() if o == sipp))
EOF
}

# A port free for UDP and TCP on 127.0.0.1.
free_port() {
    python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass'
}

# Column of the last line of a SIPp -trace_stat CSV.
stat() {
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i } END { print $c + 0 }' "$1"
}

# The gateway's RTP ports (even ports in its range it has bound), one per line.
gw_rtp_ports() {
    ss -Huanp 2>/dev/null | awk -v pid="pid=$gw_pid," -v lo="$RTP_MIN" -v hi="$RTP_MAX" '
        index($0, pid) { n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi && p % 2 == 0) print p }' | sort -n
}

# The caller's audio (µ-law, raw: SIPp sends the file's bytes as they are) and the
# greeting: the welcome prompt repeated past the longest call.
sox fixtures/audio/demo_en_jfk.wav -r 8000 -c 1 -e u-law -t raw "$work/caller.ulaw"
welcome=ivr-scripts/prompts/welcome.wav
[ -f "$welcome" ] || { echo "no $welcome" >&2; exit 1; }

RTP_MIN=20000
RTP_MAX=29999

# Starts a gateway; sets gw_pid and target (its UDP address).
start_gateway() {
    local dir=$1 greeting=$2
    cat >"$dir/hotline.toml" <<EOF
[sip]
max_calls = 10000

[media]
rtp_port_min = $RTP_MIN
rtp_port_max = $RTP_MAX
rtp_timeout_s = 30
record = $RECORD
greeting = "$greeting"
inband_dtmf = $INBAND_DTMF

# The media plane alone: whisper capacity is benches/asr_load.sh's.
[asr]
enabled = false
EOF
    ${NICE:+nice -n "$NICE"} "$BIN" serve --sip 127.0.0.1:0 --http off --data "$dir/data" --config "$dir/hotline.toml" \
        --grace-s 5 >"$dir/ready" 2>"$dir/gateway.log" &
    gw_pid=$!
    for _ in $(seq 100); do
        grep -q '^hotline ready' "$dir/ready" 2>/dev/null && break
        kill -0 "$gw_pid" 2>/dev/null || { cat "$dir/gateway.log" >&2; exit 1; }
        sleep 0.1
    done
    target=$(sed -n 's/.*udp:\([0-9.]*:[0-9]*\).*/\1/p' "$dir/ready")
    [ -n "$target" ] || { echo "gateway not ready" >&2; cat "$dir/gateway.log" >&2; exit 1; }
}

# Call records -> "loss_pct rx_deficit_pct tx_deficit_pct late jitter_mean jitter_max bad records".
analyse_calls() {
    python3 - "$1" <<'EOF'
import json, sys
calls = json.load(open(sys.argv[1]))
rx = tx = lost = late = expect = 0
jit = []
bad = 0
for c in calls:
    r = c.get("rtp") or {}
    if c.get("status") != 200 or not c.get("answered_at") or c.get("end_reason") != "caller-bye" or not r:
        bad += 1
        continue
    rx += r.get("rx_packets", 0)
    tx += r.get("tx_packets", 0)
    lost += r.get("lost", 0)
    late += r.get("late", 0)
    # Both sides stream from the answer to the BYE: one packet per 20 ms of the call.
    expect += max(0, (c.get("duration_ms") or 0) // 20 - 1)
    jit.append(r.get("jitter_ms", 0.0))
loss = 100.0 * lost / max(1, rx + lost)
deficit = 100.0 * max(0, expect - rx) / max(1, expect)
tx_deficit = 100.0 * max(0, expect - tx) / max(1, expect)
jm = sum(jit) / len(jit) if jit else 0.0
print(f"{loss:.4f} {deficit:.3f} {tx_deficit:.3f} {late} {jm:.2f} {max(jit, default=0.0):.2f} {bad} {len(calls)}")
EOF
}

# Pacing of the captured streams -> "p50 p99 dev_p99 streams packets" (ms).
analyse_pacing() {
    python3 - "$1" <<'EOF'
import struct, sys, collections
def packets(path):
    with open(path, "rb") as f:
        gh = f.read(24)
        if len(gh) < 24:
            return
        magic = struct.unpack("<I", gh[:4])[0]
        e = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        scale = 1e-9 if magic in (0xA1B23C4D, 0x4D3CB2A1) else 1e-6
        link = struct.unpack(e + "I", gh[20:24])[0]
        off = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0}[link]
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            s, frac, incl, _ = struct.unpack(e + "IIII", h)
            d = f.read(incl)
            ip = d[off:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            sport = struct.unpack(">H", ip[ihl:ihl + 2])[0]
            rtp = ip[ihl + 8:]
            if len(rtp) >= 2 and rtp[0] >> 6 == 2 and rtp[1] & 0x7F in (0, 8):
                yield s + frac * scale, sport
streams = collections.defaultdict(list)
for t, port in packets(sys.argv[1]):
    streams[port].append(t)
dts = []
for ts in streams.values():
    dts += [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
if not dts:
    print("- - - 0 0")
    sys.exit()
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]
dev = [abs(d - 20.0) for d in dts]
print(f"{pct(dts, .5):.2f} {pct(dts, .99):.2f} {pct(dev, .99):.2f} {len(streams)} {len(dts) + len(streams)}")
EOF
}

longest=0
for n in $CALLS; do
    h=$(( (n + RATE - 1) / RATE + SETTLE_S + SAMPLE_S + 10 ))
    [ "$h" -lt "$HOLD_S" ] && h=$HOLD_S
    [ "$h" -gt "$longest" ] && longest=$h
done
reps=$(python3 -c "import math,sys; print(math.ceil(($longest + 10) / float(sys.argv[1])))" "$(soxi -D "$welcome")")
greeting="$work/greeting.wav"
sox $(for _ in $(seq "$reps"); do printf '%s ' "$welcome"; done) "$greeting"
echo "greeting: $welcome x $reps = $(soxi -D "$greeting") s; rate $RATE calls/s; sample ${SAMPLE_S} s; record $RECORD; inband_dtmf $INBAND_DTMF${NICE:+; gateway nice $NICE}${SIPP_NICE:+; sipp nice $SIPP_NICE}" >&2

echo "CPU columns: % of one core ($(nproc) here): gw the gateway, sipp SIPp, other the rest of the machine" \
    "(kernel loopback work, tcpdump, ss, other users) in the same window" >&2
printf '%-5s %-5s %-8s %-9s %-7s %-6s %-6s %-8s %-6s %-8s %-8s %-6s %-13s %-8s %-11s %s\n' \
    N up gw_cpu gw/call gw_rss sipp other loss% late rx_def% tx_def% drops "pace50/99ms" "|dev|p99" rx_jit_ms failed
for n in $CALLS; do
    dir="$work/$n"
    mkdir -p "$dir"
    start_gateway "$dir" "$greeting"
    ramp=$(( (n + RATE - 1) / RATE ))
    hold=$(( ramp + SETTLE_S + SAMPLE_S + 10 ))
    [ "$hold" -lt "$HOLD_S" ] && hold=$HOLD_S
    (
        cd "$work"
        exec ${SIPP_NICE:+nice -n "$SIPP_NICE"} /usr/bin/time -f '%U %S' -o "$dir/sipp.time" \
            sipp -sf "$OLDPWD/$SCENARIO" -r "$RATE" -m "$n" -l "$n" -d $((hold * 1000)) \
            -nostdin -i 127.0.0.1 -p "$(free_port)" -mp "$(free_port)" \
            -max_recv_loops 10000 -max_sched_loops 10000 \
            -trace_stat -stf "$dir/stat.csv" -fd 5 \
            -trace_err -error_file "$dir/errors.log" \
            -trace_screen -screen_file "$dir/screen.log" \
            -timeout $((hold + ramp + 60))s -timeout_error \
            "$target" >"$dir/sipp.out" 2>"$dir/sipp.err"
    ) &
    sipp_pid=$!
    sleep $((ramp + SETTLE_S))
    # SIPp's own pid (the subshell became time; sipp is its child).
    spid=$(pgrep -P "$sipp_pid" -x sipp 2>/dev/null || true)
    sock_drops "$gw_pid" "$dir/stop-drops" "$spid" >"$dir/drops" &
    drops_pid=$!
    ports=$(gw_rtp_ports)
    up=$(printf '%s\n' "$ports" | grep -c . || true)
    pace="- - - 0 0"
    if [ "$have_tcpdump" = 1 ] && [ "$up" -gt 0 ]; then
        # A few streams spread over the calls up.
        sel=$(printf '%s\n' "$ports" | awk -v k="$PACE_STREAMS" -v n="$up" \
            '{ p[NR] = $1 } END { for (i = 0; i < k && i < n; i++) print p[1 + int(i * (n - 1) / (k > 1 ? k - 1 : 1))] }' | sort -un)
        filter="udp and src host 127.0.0.1 and ($(printf '%s\n' "$sel" | sed 's/^/src port /' | paste -sd'|' | sed 's/|/ or /g'))"
        ${NICE:+nice -n "$NICE"} tcpdump -i lo -n -s 96 -B 8192 -w "$dir/pace.pcap" "$filter" 2>"$dir/tcpdump.log" &
        dump_pid=$!
        sleep 0.5
    fi
    g0=$(cpu_ticks "$gw_pid")
    s0=$( [ -n "$spid" ] && cpu_ticks "$spid" || echo 0)
    read -r hb0 ht0 < <(host_ticks)
    t0=$(date +%s.%N)
    sleep "$SAMPLE_S"
    g1=$(cpu_ticks "$gw_pid")
    s1=$( [ -n "$spid" ] && cpu_ticks "$spid" || echo 0)
    read -r hb1 ht1 < <(host_ticks)
    t1=$(date +%s.%N)
    rss=$(rss_mb "$gw_pid")
    if [ -n "$dump_pid" ]; then
        kill -INT "$dump_pid" 2>/dev/null || true
        wait "$dump_pid" 2>/dev/null || true
        dump_pid=""
        pace=$(analyse_pacing "$dir/pace.pcap")
    fi
    rc=0
    wait "$sipp_pid" || rc=$?
    sipp_pid="" spid=""
    touch "$dir/stop-drops"
    wait "$drops_pid" || true
    drops_pid=""
    read -r gdrops sdrops <"$dir/drops" || true
    gdrops=${gdrops:-0} sdrops=${sdrops:-0}
    kill -TERM "$gw_pid"
    wait "$gw_pid" || true
    gw_pid=""
    "$BIN" calls --json --limit 1000000 --data "$dir/data" >"$dir/calls.json"
    read -r loss deficit txdef late jmean jmax bad records < <(analyse_calls "$dir/calls.json")
    read -r p50 p99 dev99 nstreams npkts <<<"$pace"
    sfailed=$(stat "$dir/stat.csv" 'FailedCall(C)')
    sok=$(stat "$dir/stat.csv" 'SuccessfulCall(C)')
    missing=$(( n > records ? n - records : 0 ))
    failed=$(( sfailed + bad + missing ))
    awk -v n="$n" -v up="$up" -v g="$((g1 - g0))" -v s="$((s1 - s0))" -v tck="$tck" -v t0="$t0" -v t1="$t1" \
        -v hb="$((hb1 - hb0))" -v ht="$((ht1 - ht0))" -v ncpu="$(nproc)" -v rss="$rss" -v loss="$loss" -v def="$deficit" -v txdef="$txdef" -v late="$late" \
        -v drops="$gdrops" -v p50="$p50" -v p99="$p99" -v dev="$dev99" \
        -v jm="$jmean" -v jx="$jmax" -v failed="$failed" 'BEGIN {
        wall = t1 - t0; gc = 100 * g / tck / wall; sc = 100 * s / tck / wall
        host = 100 * ncpu * hb / (ht > 0 ? ht : 1); other = host - gc - sc
        printf "%-5d %-5d %-8s %-9s %-7s %-6s %-6s %-8s %-6d %-8s %-8s %-6d %-13s %-8s %-11s %d\n",
            n, up, sprintf("%.1f%%", gc), sprintf("%.3f%%", (up > 0 ? gc / up : 0)), rss "MB",
            sprintf("%.0f%%", sc), sprintf("%.0f%%", other < 0 ? 0 : other),
            loss, late, def, txdef, drops, p50 "/" p99, dev, jm "/" jx, failed
    }'
    echo "  N=$n: hold ${hold} s, sipp exit $rc, sipp ok $sok failed $sfailed, records $records (not answered/caller-bye: $bad), SIPp socket drops $sdrops, pacing over $nstreams streams / $npkts packets" >&2
    # Recordings are ~3 MB a call: keep only the summary.
    [ -n "${KEEP:-}" ] || rm -rf "$dir/data/recordings"
    # Loss or late packets, packets missing at the gateway (over 0.1%: SIPp falling behind
    # shows here), frames the gateway did not send (over 0.1%: it fell behind real time),
    # receive drops on the gateway's sockets, or failed calls end the run.
    if [ "$failed" -gt 0 ] || [ "$gdrops" -gt 0 ] || [ "$late" -gt 0 ] ||
        [ "$(awk -v l="$loss" -v d="$deficit" -v t="$txdef" 'BEGIN { print (l > 0 || d > 0.1 || t > 0.1) }')" = 1 ]; then
        echo "stopped at N=$n: failed $failed, loss $loss%, late $late, rx deficit $deficit%, tx deficit $txdef%, gateway socket drops $gdrops; sipp errors:" >&2
        head -c 2000 "$dir/errors.log" >&2 2>/dev/null || true
        break
    fi
done
