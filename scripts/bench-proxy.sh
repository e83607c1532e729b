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
# - latency: a fixed 10,000 messages/s for 5 s, direct, through the proxy,
#   and through socat (a C relay that parses nothing, one process per
#   connection) -> p50/p95/p99 and what each relay adds; socat's figure is
#   the floor any relay pays on this machine (two more hops per message);
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
command -v socat >/dev/null 2>&1 || scripts/setup.sh --interop
venv=target/mitmproxy-venv
if [ ! -x "$venv/bin/mitmdump" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q mitmproxy==11.0.2
fi
bin=target/release
. scripts/lib/bench.sh

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
# socat likewise: a port found free just before.
sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
socat "TCP-LISTEN:$sport,bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=256" "TCP:$plain,nodelay" 2>"$tmp/socat.log" &
pids+=($!)
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && break; sleep 0.05; done

summary() { grep '"summary"'; }
bench_plain() { # address prefix extra...
    local addr=$1 prefix=$2
    shift 2
    "$bin/chat-plain" bench --server "$addr" --clients "$clients" --register --prefix "$prefix" --json "$@" | summary ||
        { echo "bench-proxy: the run against $addr ($prefix) failed" >&2; return 1; }
}
bench_tls() { # address prefix ca extra...
    local addr=$1 prefix=$2 ca=$3
    shift 3
    "$bin/chat-tls" bench --server "$addr" --clients "$clients" --messages 2000 --no-room --register \
        --prefix "$prefix" --ca "$ca" --json "$@" | summary
}

rounds=${ROUNDS:-3}
echo "load generator: $clients clients, $messages messages per burst, on $(nproc) cores shared with the server and the proxy;"
echo "each measure $rounds times, the targets taking turns, and the median kept (one burst swings by 30% on a shared machine)"
runs=()
for r in $(seq "$rounds"); do
    runs+=("burst direct $(bench_plain "$plain" "db$r" --messages "$messages" --no-room)")
    runs+=("burst proxy $(bench_plain "$relay" "pb$r" --messages "$messages" --no-room)")
    runs+=("burst mitmproxy $(bench_plain "127.0.0.1:$mport" "mb$r" --messages "$messages" --no-room)")
    runs+=("rate direct $(bench_plain "$plain" "dr$r" --messages 50000 --rate 10000 --no-room)")
    runs+=("rate proxy $(bench_plain "$relay" "pr$r" --messages 50000 --rate 10000 --no-room)")
    runs+=("rate socat $(bench_plain "127.0.0.1:$sport" "sr$r" --messages 50000 --rate 10000 --no-room)")
    # Both without channel binding, which would (rightly) refuse every
    # sign-in through the interception: this measures what interception
    # costs, like for like.
    runs+=("tls direct $(bench_tls "$tls" "td$r" "$tmp/certs/ca.pem" --no-channel-binding)")
    runs+=("tls intercepted $(bench_tls "$intercept" "ti$r" "$tmp/attacker/ca.pem" --no-channel-binding)")
done
printf '%s\n' "${runs[@]}" >"$tmp/runs"
python3 - "$tmp/runs" <<'PY'
import json, sys
from statistics import median
runs = {}
for line in open(sys.argv[1]):
    kind, target, summary = line.split(" ", 2)
    runs.setdefault((kind, target), []).append(json.loads(summary))
def med(kind, target, key):
    return median(r[key] for r in runs[(kind, target)])
def each(kind, target, key, fmt):
    return " ".join(fmt.format(r[key]) for r in runs[(kind, target)])
d, p, m = (med("burst", t, "messages_per_sec") for t in ("direct", "proxy", "mitmproxy"))
print(f"relay burst     direct {d:>10,.0f} msg/s   through the proxy {p:>10,.0f} msg/s   = {100 * p / d:.0f}% of direct"
      f"   (rounds: direct {each('burst', 'direct', 'messages_per_sec', '{:,.0f}')}; proxy {each('burst', 'proxy', 'messages_per_sec', '{:,.0f}')})")
print(f"mitmproxy 11    raw TCP relay {m:>10,.0f} msg/s = {100 * m / d:.0f}% of direct; ours (parsing every stanza) is {p / m:.2f}x its rate")
for q in ("p50_ms", "p95_ms", "p99_ms"):
    dq, pq, sq = (med("rate", t, q) for t in ("direct", "proxy", "socat"))
    print(f"at 10,000 msg/s {q[:3]}  direct {dq:.2f} ms   through the proxy {pq:.2f} ms (+{pq - dq:.2f})"
          f"   through socat, which parses nothing {sq:.2f} ms (+{sq - dq:.2f})")
print(f"                p99 rounds: direct {each('rate', 'direct', 'p99_ms', '{:.2f}')}; proxy {each('rate', 'proxy', 'p99_ms', '{:.2f}')}; socat {each('rate', 'socat', 'p99_ms', '{:.2f}')}")
td, ti = (med("tls", t, "setup_per_sec") for t in ("direct", "intercepted"))
print(f"TLS sign-ins    direct {td:>8,.0f}/s   intercepted (forged certificate, cached) {ti:>8,.0f}/s   = {100 * ti / td:.0f}% of direct")
PY
