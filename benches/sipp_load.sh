#!/usr/bin/env bash
# SIP load driver: SIPp's built-in UAC over UDP against `hotline serve` at
# increasing call rates, one fresh gateway per rate (release build, HTTP off,
# call store in a temporary directory). For each rate it records SIPp's
# successful and failed calls and retransmissions, the gateway's CPU time per
# call (utime + stime from /proc/PID/stat, before and after) and SIPp's own.
# It stops after the first rate with failed calls.
#
#   benches/sipp_load.sh                      # 100 200 400 600 800 1000 cps, 15 s each
#   RATES="50 100" SECS=5 benches/sipp_load.sh
#   RATES="2000 4000 6000 8000" benches/sipp_load.sh   # past 1000 cps, to the limit
#
# SIPp and the gateway share the machine's cores: run nothing else heavy
# while measuring. Build first: cargo build --release --bin hotline
set -euo pipefail

cd "$(dirname "$0")/.."
RATES=${RATES:-"100 200 400 600 800 1000"}
SECS=${SECS:-15}
BIN=${HOTLINE_BIN:-target/release/hotline}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --bin hotline" >&2; exit 1; }
command -v sipp >/dev/null || { echo "no sipp: scripts/setup.sh installs sip-tester" >&2; exit 1; }

work=$(mktemp -d)
gw_pid=""
cleanup() {
    if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -TERM "$gw_pid" 2>/dev/null || true
        wait "$gw_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

tck=$(getconf CLK_TCK)

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# A port free for UDP and TCP on 127.0.0.1 (SIPp binds both for -p).
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

# Starts a gateway; sets gw_pid and target (its UDP address).
start_gateway() {
    local dir=$1
    # Signalling capacity: live transcripts off (benches/asr_load.sh measures those).
    printf '[asr]\nenabled = false\n' >"$dir/hotline.toml"
    "$BIN" serve --sip 127.0.0.1:0 --http off --data "$dir/data" --config "$dir/hotline.toml" --grace-s 0 \
        >"$dir/ready" 2>"$dir/gateway.log" &
    gw_pid=$!
    for _ in $(seq 100); do
        grep -q '^hotline ready' "$dir/ready" 2>/dev/null && break
        kill -0 "$gw_pid" 2>/dev/null || { cat "$dir/gateway.log" >&2; exit 1; }
        sleep 0.1
    done
    target=$(sed -n 's/.*udp:\([0-9.]*:[0-9]*\).*/\1/p' "$dir/ready")
    [ -n "$target" ] || { echo "gateway not ready" >&2; cat "$dir/gateway.log" >&2; exit 1; }
}

printf '%-6s %-7s %-9s %-7s %-8s %-9s %-12s %-12s %s\n' \
    rate calls ok failed retrans wall_s "gw_cpu/call" "sipp_cpu/call" "gw_cpu_%"
for rate in $RATES; do
    dir="$work/$rate"
    mkdir -p "$dir"
    start_gateway "$dir"
    calls=$((rate * SECS))
    c0=$(cpu_ticks "$gw_pid")
    t0=$(date +%s.%N)
    rc=0
    /usr/bin/time -f '%U %S' -o "$dir/sipp.time" \
        sipp -sn uac -r "$rate" -m "$calls" -l $((rate * 4)) \
        -nostdin -i 127.0.0.1 -p "$(free_port)" -mp "$(free_port)" \
        -max_recv_loops 10000 -max_sched_loops 10000 \
        -trace_stat -stf "$dir/stat.csv" -fd 5 \
        -trace_err -error_file "$dir/errors.log" \
        -timeout $((SECS * 4))s -timeout_error \
        "$target" >"$dir/sipp.out" 2>"$dir/sipp.err" || rc=$?
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$gw_pid")
    kill -TERM "$gw_pid"
    wait "$gw_pid" || true
    gw_pid=""
    ok=$(stat "$dir/stat.csv" 'SuccessfulCall(C)')
    failed=$(stat "$dir/stat.csv" 'FailedCall(C)')
    retrans=$(stat "$dir/stat.csv" 'Retransmissions(C)')
    # The last line (time prefixes "Command exited with non-zero status").
    read -r su ss < <(tail -n 1 "$dir/sipp.time") || { su=0; ss=0; }
    awk -v rate="$rate" -v calls="$calls" -v ok="$ok" -v failed="$failed" -v re="$retrans" \
        -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v tck="$tck" -v su="$su" -v ss="$ss" 'BEGIN {
        wall = t1 - t0; n = (ok + failed > 0) ? ok + failed : 1
        printf "%-6d %-7d %-9d %-7d %-8d %-9.1f %-12s %-12s %.0f%%\n", rate, calls, ok, failed, re, wall,
            sprintf("%.0f us", c / tck / n * 1e6), sprintf("%.0f us", (su + ss) / n * 1e6), 100 * c / tck / wall
    }'
    if [ "$rc" -ne 0 ] || [ "$failed" -gt 0 ]; then
        echo "stopped: failed calls at $rate cps (sipp exit $rc); errors:" >&2
        head -c 2000 "$dir/errors.log" >&2 2>/dev/null || true
        break
    fi
done
