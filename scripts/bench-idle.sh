#!/usr/bin/env bash
# Memory per idle connection: ours against Prosody, plaintext and TLS, in one
# run on this machine. Every idle connection costs memory an attacker can
# multiply (slowloris), and a class server holds hundreds all day.
#
#   scripts/bench-idle.sh [CONNECTIONS] [ROUNDS]      default 3000 3
#
# Each measure starts a fresh server (ours plain, ours TLS, Prosody for each),
# signs CONNECTIONS clients in and leaves them idle, and reads the server's
# RSS before and after (`bench --server-pid PID --idle N`): KiB per
# connection. A fresh server for each, so that no earlier load leaves freed
# memory for the idle connections to reuse (`scripts/bench-server.sh`
# measures right after its burst, where that reuse dominates). ROUNDS
# rounds, the targets taking turns; the median is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-3000}
rounds=${2:-3}
scripts/setup.sh --interop >/dev/null
cargo build --release --workspace --bins --locked -q
bin=target/release
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
# Prosody takes its file limit from the shell; the load generator raises its own.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
. scripts/lib/prosody.sh
"$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null

# Starts one server on a free port: sets `port` and `pid`.
start() { # ours-plain|ours-tls|prosody dir
    port=$(free_port)
    case $1 in
        ours-plain) "$bin/chat-plain" server --listen "127.0.0.1:$port" --data "$2" \
            --max-registrations-per-hour 0 --max-connections 20000 2>"$2.log" & ;;
        ours-tls) "$bin/chat-tls" server --listen "127.0.0.1:$port" --data "$2" \
            --max-registrations-per-hour 0 --max-connections 20000 \
            --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key" 2>"$2.log" & ;;
        prosody)
            prosody_config "$2" "$port" "$tmp/certs"
            prosody -F --config "$2/prosody.cfg.lua" >"$2.log" 2>&1 & ;;
    esac
    pid=$!
    wait_port "$port"
}

# Stops a server: TERM, then KILL after 5 s (Prosody 0.12 can hang on
# shutdown with thousands of connections open: mod_c2s calls a nil close).
stop() { # pid
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

measure() { # label server twin round
    local dir="$tmp/$1-$4" tls=()
    start "$2" "$dir"
    [ "$3" = chat-tls ] && tls=(--ca "$tmp/certs/ca.pem")
    "$bin/$3" bench --server "127.0.0.1:$port" --clients 2 --messages 10 --no-room --register \
        --prefix "i$4" --json --server-pid "$pid" --idle "$conns" "${tls[@]}" |
        grep '"summary"' | python3 -c "import json,sys; print('$1', json.loads(sys.stdin.read())['kib_per_idle_connection'])"
    stop "$pid"
    pid=
}

echo "$conns idle connections per measure, a fresh server each, $rounds rounds"
for r in $(seq "$rounds"); do
    measure ours-plain ours-plain chat-plain "$r"
    measure prosody-plain prosody chat-plain "$r"
    measure ours-tls ours-tls chat-tls "$r"
    measure prosody-tls prosody chat-tls "$r"
done >"$tmp/results"
python3 - "$tmp/results" <<'PY'
import sys
from statistics import median
runs = {}
for line in open(sys.argv[1]):
    label, kib = line.split()
    runs.setdefault(label, []).append(float(kib))
for label in ("ours-plain", "prosody-plain", "ours-tls", "prosody-tls"):
    v = runs[label]
    print(f"{label:<14} {median(v):6.1f} KiB per idle connection   (rounds: {' '.join(f'{x:.1f}' for x in v)})")
for kind in ("plain", "tls"):
    print(f"ours/prosody {kind}: {median(runs['ours-' + kind]) / median(runs['prosody-' + kind]):.2f}")
PY
