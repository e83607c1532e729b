#!/usr/bin/env bash
# What stream management (XEP-0198) costs, measured in one run on this
# machine: the same load against the same server (ours, plaintext and TLS),
# with the clients' stream management off and on, the two taking turns
# ROUNDS times. With it on, the server keeps every stanza it writes until
# the client acknowledges it, and both sides send <r/> and <a/>. Prints
# messages per second (a burst), latency at a fixed 10,000 msg/s, and the
# ratio on/off. Loopback only, torn down at the end.
#
#   scripts/bench-sm.sh [CLIENTS] [MESSAGES] [ROUNDS]   default 50 100000 2
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-50}
messages=${2:-100000}
rounds=${3:-2}
cargo build --release --workspace --bins --locked -q
bin=target/release
. scripts/lib/bench.sh
"$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null

run() { # twin sm(on|off) round
    local twin=$1 sm=$2 r=$3 extra=() tls=()
    [ "$sm" = on ] && extra=(--stream-management)
    [ "$twin" = chat-tls ] && tls=(--ca "$tmp/certs/ca.pem")
    local server=${servers[$twin]}
    local burst rate
    burst=$("$bin/$twin" bench --server "$server" --clients "$clients" --messages "$messages" \
        --register --prefix "b$sm$r" --json --no-room "${tls[@]}" "${extra[@]}" | grep '"summary"')
    rate=$("$bin/$twin" bench --server "$server" --clients "$clients" --messages 30000 --rate 10000 \
        --no-room --register --prefix "r$sm$r" --json "${tls[@]}" "${extra[@]}" | grep '"summary"')
    python3 - "$twin" "$sm" "$burst" "$rate" <<'PY'
import json, sys
twin, sm, burst, rate = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(f"{twin:<10} sm {sm:<3} {burst['messages_per_sec']:>10,.0f} msg/s   "
      f"p50/p99 at 10k/s {rate['p50_ms']:.2f}/{rate['p99_ms']:.2f} ms")
print(json.dumps({"twin": twin, "sm": sm, "rate": burst['messages_per_sec']}), file=sys.stderr)
PY
}

declare -A servers
launch "$tmp/plain.log" "$bin/chat-plain" server --listen 127.0.0.1:0 --data "$tmp/plain" \
    --max-registrations-per-hour 0
servers[chat-plain]=$(address "$tmp/plain.log")
launch "$tmp/tls.log" "$bin/chat-tls" server --listen 127.0.0.1:0 --data "$tmp/tls" \
    --max-registrations-per-hour 0 --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key"
servers[chat-tls]=$(address "$tmp/tls.log")

echo "$clients clients, $messages messages per burst, $rounds rounds, on $(nproc) cores shared with the servers"
for r in $(seq "$rounds"); do
    for twin in chat-plain chat-tls; do
        run "$twin" off "$r"
        run "$twin" on "$r"
    done
done 2>"$tmp/json"
python3 - "$tmp/json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for twin in ("chat-plain", "chat-tls"):
    off = statistics.median(r["rate"] for r in rows if r["twin"] == twin and r["sm"] == "off")
    on = statistics.median(r["rate"] for r in rows if r["twin"] == twin and r["sm"] == "on")
    print(f"{twin}: stream management on / off = {on / off:.2f} (medians {on:,.0f} / {off:,.0f} msg/s)")
PY
