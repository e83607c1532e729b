#!/usr/bin/env bash
# Our server against a reference XMPP server (Prosody, from Debian), in one
# run on this machine: the same load generator, the same settings, over
# plaintext and TLS (STARTTLS), everything on loopback and torn down at the
# end.
#
#   scripts/bench-server.sh [CLIENTS] [MESSAGES]      default 50 200000
#
# For each target it runs, with `chat-plain bench` or `chat-tls bench`:
#   a burst: MESSAGES one to one in pairs, then a room    -> messages/s
#   a fixed 10,000 messages/s for 5 s                      -> p50/p95/p99 latency
#   1,000 idle connections                                 -> server KiB each
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-50}
messages=${2:-200000}
scripts/setup.sh --interop >/dev/null
cargo build --release --workspace --bins --locked -q
bin=target/release
. scripts/lib/bench.sh

"$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null
ours_plain=$(free_port); ours_tls=$(free_port); prosody_port=$(free_port)
# The load generator registers its accounts from one address, far past the
# per-address registration burst a real server allows: lift that limit here.
"$bin/chat-plain" server --listen "127.0.0.1:$ours_plain" --data "$tmp/plain" \
    --max-registrations-per-hour 0 2>"$tmp/plain.log" &
pids+=($!); pid_plain=$!
"$bin/chat-tls" server --listen "127.0.0.1:$ours_tls" --data "$tmp/tls" \
    --max-registrations-per-hour 0 --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key" 2>"$tmp/tls.log" &
pids+=($!); pid_tls=$!
. scripts/lib/prosody.sh
prosody_config "$tmp/prosody" "$prosody_port" "$tmp/certs"
prosody -F --config "$tmp/prosody/prosody.cfg.lua" >"$tmp/prosody.log" 2>&1 &
pids+=($!); pid_prosody=$!
for p in "$ours_plain" "$ours_tls" "$prosody_port"; do wait_port "$p"; done

run() { # label twin port pid prefix extra...
    local label=$1 twin=$2 port=$3 pid=$4 prefix=$5
    shift 5
    local tls=()
    [ "$twin" = chat-tls ] && tls=(--ca "$tmp/certs/ca.pem")
    local burst rate
    burst=$("$bin/$twin" bench --server "127.0.0.1:$port" --clients "$clients" --messages "$messages" \
        --register --prefix "${prefix}b" --json --server-pid "$pid" --idle 1000 "${tls[@]}" "$@" | grep '"summary"')
    rate=$("$bin/$twin" bench --server "127.0.0.1:$port" --clients "$clients" --messages 50000 --rate 10000 \
        --no-room --register --prefix "${prefix}r" --json "${tls[@]}" "$@" | grep '"summary"')
    python3 - "$label" "$burst" "$rate" <<'PY'
import json, sys
label, burst, rate = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
kib = burst.get("kib_per_idle_connection")
print(f"{label:<16} {burst['messages_per_sec']:>12,.0f} msg/s   p50/p95/p99 at 10k/s: "
      f"{rate['p50_ms']:.2f}/{rate['p95_ms']:.2f}/{rate['p99_ms']:.2f} ms   "
      f"sign-in {burst['setup_per_sec']:,.0f}/s, again {burst['setup_again_per_sec']:,.0f}/s   "
      f"{'%.1f KiB/idle conn' % kib if kib is not None else ''}")
print(json.dumps({"label": label, "burst": burst, "rate": rate}), file=sys.stderr)
PY
}

echo "load generator: $clients clients, $messages messages per burst phase, on $(nproc) cores shared with the servers"
run "ours plain" chat-plain "$ours_plain" "$pid_plain" op 2>>"$tmp/results.jsonl"
run "prosody plain" chat-plain "$prosody_port" "$pid_prosody" pp 2>>"$tmp/results.jsonl"
run "ours TLS" chat-tls "$ours_tls" "$pid_tls" ot 2>>"$tmp/results.jsonl"
run "prosody TLS" chat-tls "$prosody_port" "$pid_prosody" pt 2>>"$tmp/results.jsonl"
python3 - "$tmp/results.jsonl" <<'PY'
import json, sys
r = {j["label"]: j["burst"]["messages_per_sec"] for j in map(json.loads, open(sys.argv[1]))}
print(f"ratios: ours/prosody plain {r['ours plain']/r['prosody plain']:.1f}x, "
      f"ours/prosody TLS {r['ours TLS']/r['prosody TLS']:.1f}x, "
      f"ours TLS/plain {100*r['ours TLS']/r['ours plain']:.0f}%")
PY
