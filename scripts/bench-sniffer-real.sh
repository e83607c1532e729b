#!/usr/bin/env bash
# The sniffer's reading speed on traffic nobody here wrote, next to tshark
# on the same files in the same run, both pinned to one core:
#
#   scripts/bench-sniffer-real.sh [MiB ...]      default 100 1024
#
# 1. Records one varied session between two slixmpp clients through Prosody
#    (scripts/lib/real_session.py: registration, SCRAM, roster and
#    subscriptions, presence with capabilities, disco, 80 messages with
#    receipts, a room, a 24 KiB file in-band), once in plaintext and once
#    over STARTTLS with slixmpp writing its key log.
# 2. Replicates each to every size asked (xmpp-capgen --replicate: each copy
#    its own client address, the server on 5222 where tshark's XMPP
#    dissector looks), kept under target/bench/real/ between runs.
# 3. Times, on each file: `sniffer read --json` (every finding printed),
#    `sniffer read --quiet --json` (the summary), and the same with
#    `--keylog` on the TLS copy, each on one core (`--threads 1`, pinned)
#    and on every core (the default: connections read by several
#    threads); tshark (`-Y xmpp.message -V`, and with the
#    key log for TLS) on the smallest size only (it reads about 3 MB/s).
#    Message bodies found by each are counted; peak memory is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100 1024)
scripts/setup.sh --interop >/dev/null
cargo build --release -p sniffer -p chat-tls --locked -q
bin=target/release
python=target/interop-venv/bin/python
dir=target/bench/real
mkdir -p "$dir"
core=${BENCH_CORE:-0}
. scripts/lib/bench.sh

record() { # mode(plain|starttls) -> $dir/session-MODE.pcap (+ keys.log)
    local mode=$1 out=$dir/session-$1.pcap
    [ -s "$out" ] && return 0
    local port
    port=$(free_port)
    . scripts/lib/prosody.sh
    [ -d "$tmp/certs" ] || "$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null
    prosody_config "$tmp/prosody-$mode" "$port" "$tmp/certs"
    prosody -F --config "$tmp/prosody-$mode/prosody.cfg.lua" >"$tmp/prosody-$mode.log" 2>&1 &
    local pp=$!
    pids+=("$pp")
    wait_port "$port"
    tcpdump -i lo -B 32768 -w "$tmp/$mode.pcap" "tcp port $port" 2>"$tmp/$mode.tcpdump" &
    local tp=$!
    pids+=("$tp")
    for _ in $(seq 100); do grep -q "listening on" "$tmp/$mode.tcpdump" && break; sleep 0.1; done
    local tls=()
    [ "$mode" = starttls ] && tls=(--tls starttls --ca "$tmp/certs/ca.pem")
    rm -f "$dir/keys.log"
    SSLKEYLOGFILE=$(realpath "$dir")/keys.log "$python" scripts/lib/real_session.py \
        --server "127.0.0.1:$port" --tag "$mode" "${tls[@]}" >&2
    sleep 1.5
    kill -INT "$tp"
    wait "$tp" 2>/dev/null || true
    kill "$pp" 2>/dev/null || true
    mv "$tmp/$mode.pcap" "$out"
    echo "$port" >"$dir/session-$mode.port"
}
record plain
record starttls

# Sniffer: "seconds peak_kb messages". One thread pinned to one core, or
# (all) the default threads on every core.
sniffer_run() { # one|all file args...
    local cores=$core threads=1
    [ "$1" = all ] && cores=0-$(($(nproc) - 1)) threads=0
    local f=$2
    shift 2
    cat "$f" >/dev/null
    /usr/bin/time -f "%e %M" -o "$tmp/t" taskset -c "$cores" "$bin/sniffer" read "$f" --threads "$threads" "$@" >"$tmp/out"
    local m
    m=$(grep '"type":"totals"' "$tmp/out" | sed 's/.*"messages":\([0-9]*\).*/\1/')
    echo "$(cat "$tmp/t") $m"
}
# tshark: "seconds peak_kb bodies".
tshark_run() { # file args...
    local f=$1
    shift
    cat "$f" >/dev/null
    local n
    n=$( { /usr/bin/time -f "%e %M" -o "$tmp/t" taskset -c "$core" tshark -r "$f" "$@" -Y xmpp.message -V 2>/dev/null; } |
        grep -c '^ *BODY \[value=' || true)
    echo "$(cat "$tmp/t") $n"
}
row() { # label bytes "secs kb count"
    local label=$1 bytes=$2 secs kb n
    read -r secs kb n <<<"$3"
    python3 -c "print(f'{\"$label\":<44} {$secs:>7.2f} s {($bytes/1e6)/max($secs,0.001):>8.1f} MB/s {$kb/1024:>8.1f} MB {$n:>10} messages')"
}

first=1
for size in "${sizes[@]}"; do
    for mode in plain starttls; do
        f=$dir/real-$mode-${size}m.pcap
        [ -s "$f" ] || "$bin/xmpp-capgen" --replicate "$dir/session-$mode.pcap" \
            --server-port "$(cat "$dir/session-$mode.port")" --out "$f" --megabytes "$size" >&2
    done
    plain=$dir/real-plain-${size}m.pcap
    tls=$dir/real-starttls-${size}m.pcap
    bytes=$(stat -c %s "$plain")
    tbytes=$(stat -c %s "$tls")
    echo "== $size MiB: plaintext $bytes bytes, TLS $tbytes bytes (Prosody and slixmpp, replicated)"
    for on in one all; do
        echo "-- sniffer, $on: $([ $on = one ] && echo "--threads 1 on one core" || echo "default threads on $(nproc) cores")"
        row "sniffer --json (every finding)" "$bytes" "$(sniffer_run $on "$plain" --json)"
        row "sniffer --quiet --json (summary)" "$bytes" "$(sniffer_run $on "$plain" --quiet --json)"
        row "sniffer TLS --keylog --json" "$tbytes" "$(sniffer_run $on "$tls" --keylog "$dir/keys.log" --json)"
        row "sniffer TLS --keylog --quiet --json" "$tbytes" "$(sniffer_run $on "$tls" --keylog "$dir/keys.log" --quiet --json)"
    done
    if ((first)); then
        echo "-- tshark (one core)"
        row "tshark -Y xmpp.message -V" "$bytes" "$(tshark_run "$plain")"
        row "tshark TLS, same key log" "$tbytes" "$(tshark_run "$tls" -o "tls.keylog_file:$dir/keys.log")"
        first=0
    fi
done
