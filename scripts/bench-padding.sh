#!/usr/bin/env bash
# What `chat-tls client --pad N` costs and what it hides, measured on the
# wire in one run: the same session (sign in, then lab 10's five messages,
# 2 to 393 characters, each waiting for its receipt) through a passive
# `mitm-proxy` relay that writes both legs to a pcap, once per N. For each
# N it prints the bytes the client sent (the proxy's count), their ratio to
# no padding, the TLS record of each message (`sniffer read --json`), and
# how many different record sizes the five messages left. Loopback only,
# torn down at the end.
#
#   scripts/bench-padding.sh [N...]        default 0 16 64 256 1024
set -euo pipefail
cd "$(dirname "$0")/.."
pads=("$@")
[ ${#pads[@]} -gt 0 ] || pads=(0 16 64 256 1024)
cargo build --release --workspace --bins --locked -q
bin=target/release
. scripts/lib/bench.sh

. scripts/lib/lab10-messages.sh

"$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null
launch "$tmp/server.log" "$bin/chat-tls" server --listen 127.0.0.1:0 --data "$tmp/data" \
    --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key"
server=$(address "$tmp/server.log")
client() { # user extra-flags...
    local user=$1
    shift
    CHAT_PASSWORD=pw "$bin/chat-tls" client --server "$server" --jid "$user@localhost" \
        --ca "$tmp/certs/ca.pem" "$@"
}
client alice --register </dev/null >/dev/null 2>&1
client bob --register </dev/null >/dev/null 2>&1

printf '%-6s %12s %8s  %-28s %s\n' pad "client bytes" ratio "message records (bytes)" "distinct"
base=
for pad in "${pads[@]}"; do
    "$bin/mitm-proxy" --json --listen 127.0.0.1:0 --upstream "$server" \
        --write "$tmp/pad$pad.pcap" >"$tmp/proxy$pad.json" 2>"$tmp/proxy$pad.log" &
    proxy_pid=$!
    pids+=("$proxy_pid")
    proxy=$(address "$tmp/proxy$pad.log")
    # bob, straight to the server, receives the five and acknowledges each.
    waits=$(for _ in "${messages[@]}"; do echo "/wait message alice 20"; done)
    client bob <<<"$waits" >/dev/null 2>&1 &
    bob=$!
    sleep 0.5
    # alice through the proxy: a second's pause after the sign-in, so the
    # messages' records are the ones after it.
    {
        sleep 1
        for m in "${messages[@]}"; do
            echo "/msg bob $m"
            echo "/wait receipt bob 20"
        done
    } | CHAT_PASSWORD=pw "$bin/chat-tls" client --server "$proxy" --jid alice@localhost \
        --ca "$tmp/certs/ca.pem" --pad "$pad" >/dev/null 2>&1
    wait "$bob"
    kill -INT "$proxy_pid"
    wait "$proxy_pid" 2>/dev/null || true
    up=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: v = json.loads(l)
    except ValueError: continue
    if v.get("type") == "closed": print(v["bytes_up"]); break' "$tmp/proxy$pad.json")
    # The client leg of the capture: its first five records to the server
    # after the pause, one a message (the client sends nothing else while
    # it waits for each receipt).
    sizes=$("$bin/sniffer" read "$tmp/pad$pad.pcap" --json | python3 -c 'import json,sys
for l in sys.stdin:
    v = json.loads(l)
    if v.get("type") == "tls-traffic":
        s = [x for x, t in zip(v["sizes"], v["times"]) if x > 0 and t > 0.9][:5]
        print(" ".join(map(str, s)), "|", len(set(s)))
        break')
    [ -n "$base" ] || base=$up
    ratio=$(python3 -c "print(f'{$up / $base:.2f}')")
    printf '%-6s %12s %8s  %-28s %s\n' "$pad" "$up" "$ratio" "${sizes% | *}" "${sizes##* | }"
done
