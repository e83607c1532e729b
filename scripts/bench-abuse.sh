#!/usr/bin/env bash
# What a hostile user gets out of the server in a few seconds: password
# guesses against one account, and registrations, from one address with
# four connections in parallel (one connection per attempt), on loopback.
#
#   scripts/bench-abuse.sh [SECONDS]      default 10
#
# Prints one line per case. Before the throttles (issue 12) this machine
# gave about 2,400 guesses and 1,200 registrations a second.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
scripts/setup.sh >/dev/null
cargo build --release --bin chat-plain --locked -q
tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/chat-plain server --listen "127.0.0.1:$port" --data "$tmp/data" 2>"$tmp/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
python3 - "$port" "$secs" <<'PY'
import base64, socket, sys, threading, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
HDR = (b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
       b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")

def until(s, marks):
    buf = b""
    while not any(m in buf for m in marks):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return buf

def attempt(kind, n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(HDR)
    until(s, [b"</stream:features>"])
    if kind == "guess":
        tok = base64.b64encode(f"\0victim\0guess{n}".encode()).decode()
        s.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{tok}</auth>".encode())
        ok = b"failure" in until(s, [b"</failure>", b"<success", b"</stream:stream>"])
    else:
        s.sendall(f"<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>{kind}{n}</username>"
                  f"<password>pw</password></query></iq>".encode())
        ok = b"type='result'" in until(s, [b"</iq>", b"/>"])
    s.close()
    return ok

def run(kind, secs):
    done = []
    def worker(w):
        t0, n, good = time.time(), 0, 0
        while time.time() - t0 < secs:
            good += attempt(kind, w * 10**7 + n)
            n += 1
        done.append(good)
    ts = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return sum(done)

# The account under attack: "victim" (registered here as the first user).
s = socket.create_connection(("127.0.0.1", port)); s.sendall(HDR); until(s, [b"</stream:features>"])
s.sendall(b"<iq type='set' id='v'><query xmlns='jabber:iq:register'><username>victim</username><password>right</password></query></iq>")
until(s, [b"</iq>", b"/>"]); s.close()
g = run("guess", secs)
print(f"password guesses against one account: {g} in {secs:.0f} s ({g/secs:.1f}/s)")
r = run("user", secs)
print(f"registrations from one address:       {r} in {secs:.0f} s ({r/secs:.1f}/s)")
PY
