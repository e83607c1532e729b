#!/usr/bin/env bash
# What mitm-proxy costs, in one run on this machine: the same load
# generator against our server directly and through the proxy, so the
# ratio holds however busy the machine is. Everything on loopback, torn
# down at the end.
#
#   scripts/bench-proxy.sh [CLIENTS] [MESSAGES]      default 50 200000
#
# - relay throughput: a burst of MESSAGES one to one (chat-plain), direct
#   and through `mitm-proxy --quiet` (every stanza still parsed both ways)
#   -> messages/s and the ratio;
# - latency: a fixed 10,000 messages/s for 5 s, direct and through the
#   proxy -> p50/p95/p99 and what the proxy adds;
# - intercept-tls: sign-ins per second over STARTTLS (TLS handshake,
#   SCRAM, bind), direct and through the proxy minting certificates from
#   its own CA (cached per name);
# - mitmproxy (from PyPI, into target/mitmproxy-venv) as the reference: its
#   raw TCP relay (`mitmdump --mode reverse:tcp://...`, no parsing at all)
#   under the same burst, next to ours (which parses every stanza).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-50}
messages=${2:-200000}
cargo build --release --workspace --bins --locked -q
venv=target/mitmproxy-venv
if [ ! -x "$venv/bin/mitmdump" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q mitmproxy==11.0.2
fi
bin=target/release
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Starts a program on port 0, in this shell (so cleanup stops it), with its
# stderr in LOG.
launch() { # log command...
    local log=$1
    shift
    "$@" >/dev/null 2>"$log" &
    pids+=($!)
}
# The address in a program's readiness line (": ready listen=ADDR").
address() { # log
    for _ in $(seq 200); do
        if grep -q ': ready listen=' "$1" 2>/dev/null; then
            grep -o 'ready listen=[^ ]*' "$1" | head -1 | cut -d= -f2
            return 0
        fi
        sleep 0.05
    done
    echo "did not start:" >&2
    cat "$1" >&2
    return 1
}

"$bin/chat-tls" certs --out "$tmp/certs" --domain localhost >/dev/null
"$bin/mitm-proxy" ca --out "$tmp/attacker" >/dev/null
launch "$tmp/plain.log" "$bin/chat-plain" server --listen 127.0.0.1:0 --data "$tmp/plain" \
    --max-registrations-per-hour 0
plain=$(address "$tmp/plain.log")
launch "$tmp/tls.log" "$bin/chat-tls" server --listen 127.0.0.1:0 --data "$tmp/tls" \
    --max-registrations-per-hour 0 --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key"
tls=$(address "$tmp/tls.log")
launch "$tmp/relay.log" "$bin/mitm-proxy" --quiet --listen 127.0.0.1:0 --upstream "$plain"
relay=$(address "$tmp/relay.log")
launch "$tmp/intercept.log" "$bin/mitm-proxy" --quiet --listen 127.0.0.1:0 --upstream "$tls" \
    --attack intercept-tls --ca-dir "$tmp/attacker"
intercept=$(address "$tmp/intercept.log")
# mitmdump cannot bind port 0 and say which it got: a port found free just
# before (a small race, acceptable in a benchmark run by hand).
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/mitmdump" -q --mode "reverse:tcp://$plain@127.0.0.1:$mport" >"$tmp/mitmdump.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.05; done

summary() { grep '"summary"'; }
bench_plain() { # address prefix extra...
    local addr=$1 prefix=$2
    shift 2
    "$bin/chat-plain" bench --server "$addr" --clients "$clients" --register --prefix "$prefix" --json "$@" | summary
}
bench_tls() { # address prefix ca
    "$bin/chat-tls" bench --server "$1" --clients "$clients" --messages 2000 --no-room --register \
        --prefix "$2" --ca "$3" --json | summary
}

echo "load generator: $clients clients, $messages messages per burst, on $(nproc) cores shared with the server and the proxy"
direct=$(bench_plain "$plain" db --messages "$messages" --no-room)
proxied=$(bench_plain "$relay" pb --messages "$messages" --no-room)
mitm=$(bench_plain "127.0.0.1:$mport" mb --messages "$messages" --no-room)
direct_rate=$(bench_plain "$plain" dr --messages 50000 --rate 10000 --no-room)
proxied_rate=$(bench_plain "$relay" pr --messages 50000 --rate 10000 --no-room)
tls_direct=$(bench_tls "$tls" td "$tmp/certs/ca.pem")
tls_intercepted=$(bench_tls "$intercept" ti "$tmp/attacker/ca.pem")
python3 - "$direct" "$proxied" "$direct_rate" "$proxied_rate" "$tls_direct" "$tls_intercepted" "$mitm" <<'PY'
import json, sys
d, p, dr, pr, td, ti, m = (json.loads(a) for a in sys.argv[1:])
print(f"relay burst     direct {d['messages_per_sec']:>10,.0f} msg/s   through the proxy {p['messages_per_sec']:>10,.0f} msg/s"
      f"   = {100 * p['messages_per_sec'] / d['messages_per_sec']:.0f}% of direct")
print(f"at 10,000 msg/s direct p50/p95/p99 {dr['p50_ms']:.2f}/{dr['p95_ms']:.2f}/{dr['p99_ms']:.2f} ms"
      f"   through the proxy {pr['p50_ms']:.2f}/{pr['p95_ms']:.2f}/{pr['p99_ms']:.2f} ms"
      f"   the proxy adds {pr['p99_ms'] - dr['p99_ms']:.2f} ms at p99")
print(f"mitmproxy 11    raw TCP relay {m['messages_per_sec']:>10,.0f} msg/s = {100 * m['messages_per_sec'] / d['messages_per_sec']:.0f}% of direct;"
      f" ours (parsing every stanza) is {p['messages_per_sec'] / m['messages_per_sec']:.1f}x its rate")
print(f"TLS sign-ins    direct {td['setup_per_sec']:>8,.0f}/s   intercepted (forged certificate, cached) {ti['setup_per_sec']:>8,.0f}/s"
      f"   = {100 * ti['setup_per_sec'] / td['setup_per_sec']:.0f}% of direct")
PY
