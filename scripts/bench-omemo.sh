#!/usr/bin/env bash
# What end-to-end encryption (OMEMO, `--e2e on`) costs, next to the same
# client without it, in one run over `chat-tls`:
#
# 1. bytes: lab 10's five messages (2 to 393 characters), each waiting for
#    its receipt, from alice through a passive `mitm-proxy` relay that
#    counts what the client sent (the sign-in and, with OMEMO, publishing
#    the device and fetching bob's keys included);
# 2. time: alice sends N messages in a row; the clock runs from her start
#    to bob's N-th message (bob decrypting each one, with OMEMO).
#
# Each figure is printed for both, with the ratio OMEMO / without. Loopback
# only, torn down at the end.
#
#   scripts/bench-omemo.sh [N]        default 200
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
cargo build --release --workspace --bins --locked -q
bin=target/release
. scripts/lib/bench.sh

. scripts/lib/lab10-messages.sh

"$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null
launch "$tmp/server.log" "$bin/chat-tls" server --listen 127.0.0.1:0 --data "$tmp/data" \
    --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key"
server=$(address "$tmp/server.log")
client() { # server user extra-flags...
    local at=$1 user=$2
    shift 2
    CHAT_PASSWORD=pw "$bin/chat-tls" client --server "$at" --jid "$user@localhost" \
        --ca "$tmp/certs/ca.pem" "$@"
}

declare -A bytes secs
for mode in off on; do
    # New accounts for each mode: OMEMO's first message starts a session
    # (a key exchange), as a real first conversation does.
    a="alice-$mode" b="bob-$mode"
    flags=(--e2e "$mode" --data "$tmp/keys")
    client "$server" "$a" --register "${flags[@]}" </dev/null >/dev/null 2>&1
    client "$server" "$b" --register "${flags[@]}" </dev/null >/dev/null 2>&1

    # 1. Bytes through the relay.
    "$bin/mitm-proxy" --json --listen 127.0.0.1:0 --upstream "$server" \
        >"$tmp/proxy-$mode.json" 2>"$tmp/proxy-$mode.log" &
    proxy_pid=$!
    pids+=("$proxy_pid")
    proxy=$(address "$tmp/proxy-$mode.log")
    waits=$(for _ in "${messages[@]}"; do echo "/wait message $a 20"; done)
    client "$server" "$b" "${flags[@]}" <<<"$waits" >/dev/null 2>&1 &
    bob=$!
    sleep 0.5
    {
        for m in "${messages[@]}"; do
            echo "/msg $b $m"
            echo "/wait receipt $b 20"
        done
    } | client "$proxy" "$a" "${flags[@]}" >/dev/null 2>&1
    wait "$bob"
    kill -INT "$proxy_pid"
    wait "$proxy_pid" 2>/dev/null || true
    bytes[$mode]=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: v = json.loads(l)
    except ValueError: continue
    if v.get("type") == "closed": print(v["bytes_up"]); break' "$tmp/proxy-$mode.json")

    # 2. N messages in a row, timed to the last one bob reads.
    waits=$(for _ in $(seq "$n"); do echo "/wait message $a 60"; done)
    client "$server" "$b" "${flags[@]}" <<<"$waits" >"$tmp/bob-$mode.out" 2>&1 &
    bob=$!
    sleep 0.5
    start=$(date +%s.%N)
    for i in $(seq "$n"); do echo "/msg $b message number $i of $n"; done |
        client "$server" "$a" "${flags[@]}" >"$tmp/alice-$mode.out" 2>&1 || true
    wait "$bob" || true
    end=$(date +%s.%N)
    got=$(grep -c '^message from' "$tmp/bob-$mode.out" || true)
    if [ "$got" -ne "$n" ]; then
        echo "bench-omemo: bob read $got of $n messages ($mode); the clients said:" >&2
        tail -5 "$tmp/alice-$mode.out" "$tmp/bob-$mode.out" >&2
        exit 1
    fi
    secs[$mode]=$(python3 -c "print(f'{$end - $start:.2f}')")
done

printf '%-34s %12s %12s %8s\n' "" "without" "OMEMO" ratio
printf '%-34s %12s %12s %8s\n' "bytes from the client (5 messages)" "${bytes[off]}" "${bytes[on]}" \
    "$(python3 -c "print(f'{${bytes[on]} / ${bytes[off]}:.2f}')")"
printf '%-34s %12s %12s %8s\n' "seconds for $n messages" "${secs[off]}" "${secs[on]}" \
    "$(python3 -c "print(f'{${secs[on]} / ${secs[off]}:.2f}')")"
printf '%-34s %12s %12s\n' "messages a second" \
    "$(python3 -c "print(f'{$n / ${secs[off]}:.0f}')")" "$(python3 -c "print(f'{$n / ${secs[on]}:.0f}')")"
