#!/usr/bin/env bash
# The main job, until the side-by-side demo exists: a chat-plain server on
# loopback and two scripted clients, alice and bob, who sign up, add each
# other, set a status and chat. Everything it starts is stopped at the end,
# also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --bins --locked -q
bin=target/debug/chat-plain

port=${DEMO_PORT:-$((20000 + RANDOM % 20000))}
addr=127.0.0.1:$port
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "== chat-plain server on $addr (data in a temporary folder)"
"$bin" server --listen "$addr" --domain localhost --data "$tmp/data" 2>"$tmp/server.log" &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

client() { # name password script
    CHAT_PASSWORD=$2 "$bin" client --server "$addr" --jid "$1@localhost" --register <<<"$3" 2>&1 |
        sed -u "s/^/$(printf '%-6s' "$1")| /"
}

# bob waits for alice's request, accepts it, and answers her message.
client bob bob-secret "/wait subscribe alice 20
/add alice
/status chat happy to talk
/wait message alice 20
/msg alice Hi Alice! Loud and clear.
/wait receipt alice 20" > "$tmp/bob.out" &
pids+=($!)
for _ in $(seq 50); do grep -q "signed in" "$tmp/bob.out" && break; sleep 0.1; done

client alice alice-secret "/add bob
/wait subscription bob 20
/status away at the lab
/msg bob Hello Bob, can you read me?
/wait receipt bob 20
/wait message bob 20
/roster"
wait "${pids[1]}" || true
cat "$tmp/bob.out"
echo "== what the server logged"
sed 's/\x1b\[[0-9;]*m//g' "$tmp/server.log"
echo "== done: this chat crossed the network in plaintext; the sniffer (coming next) will show what anyone on the path saw"
