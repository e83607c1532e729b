#!/usr/bin/env bash
# Live capture under load: `sniffer live` and tcpdump capture the same
# traffic at the same time, and each says how many packets it got and how
# many the kernel dropped (libpcap's statistics, both). Both get the same
# 32 MiB kernel buffer.
#
#   scripts/bench-live.sh [SECONDS]        default 5 per row
#
# 1. Live chat on loopback: `chat-plain bench` clients chatting through
#    `chat-plain server` at 2,500 and 25,000 messages/s (on two cores the
#    chat itself tops out near 55,000 packets/s).
# 2. The first run's capture (real chat traffic) replayed by tcpreplay at
#    exactly 10,000 and 100,000 packets/s, every loop with new addresses
#    (--unique-ip, so each is new connections to reassemble, not
#    retransmissions), onto one end of a veth pair in a network namespace
#    made for the run, captured on the other end. (Replaying onto `lo`
#    itself is not seen: libpcap ignores outgoing packets on loopback.)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
scripts/setup.sh --interop >/dev/null
cargo build --release -p sniffer -p chat-plain --locked -q
bin=target/release
. scripts/lib/bench.sh

ns=sniffer-bench-$$
bench_cleanup_more() { ip netns del "$ns" 2>/dev/null || true; }

# Runs tcpdump and the sniffer on IFACE (in namespace NS, or here if empty)
# with FILTER around COMMAND..., then prints one row: LABEL, packets/s, both
# counts.
race() { # label iface ns filter command...
    local label=$1 iface=$2 filter=$4 in=()
    [ -n "$3" ] && in=(ip netns exec "$3")
    shift 4
    local tag=$RANDOM
    "${in[@]}" tcpdump -i "$iface" -B 32768 -w "$tmp/$tag.pcap" "$filter" 2>"$tmp/$tag.tcpdump" &
    local tp=$!
    "${in[@]}" "$bin/sniffer" live --interface "$iface" --filter "$filter" --quiet --json \
        >"$tmp/$tag.sniffer" 2>"$tmp/$tag.sniffer.err" &
    local sp=$!
    pids+=("$tp" "$sp")
    for _ in $(seq 100); do
        grep -q "listening on" "$tmp/$tag.tcpdump" 2>/dev/null &&
            grep -q "capturing on" "$tmp/$tag.sniffer.err" 2>/dev/null && break
        sleep 0.1
    done
    local start end
    start=$(date +%s.%N)
    "$@" >"$tmp/$tag.load" 2>&1
    end=$(date +%s.%N)
    # tcpdump hands packets over in blocks of up to a second: wait for the
    # last one before stopping it.
    sleep 1.5
    kill -INT "$tp" "$sp" 2>/dev/null || true
    wait "$tp" "$sp" 2>/dev/null || true
    if ! grep -q "packets captured" "$tmp/$tag.tcpdump"; then
        echo "bench-live: tcpdump did not run:" >&2
        cat "$tmp/$tag.tcpdump" >&2
        exit 1
    fi
    local t_cap t_drop totals s_cap s_drop pps
    t_cap=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$tmp/$tag.tcpdump")
    t_drop=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$tmp/$tag.tcpdump")
    totals=$(grep '"type":"totals"' "$tmp/$tag.sniffer")
    s_cap=$(sed 's/.*"frames":\([0-9]*\).*/\1/' <<<"$totals")
    s_drop=$(sed 's/.*"dropped":\([0-9]*\).*/\1/' <<<"$totals")
    pps=$(python3 -c "print(round($t_cap / ($end - $start)))")
    printf '%-34s %10s   %-22s %-22s\n' "$label" "$pps" "$t_cap / $t_drop" "$s_cap / $s_drop"
    last_pcap=$tmp/$tag.pcap
}

port=$(free_port)
"$bin/chat-plain" server --listen "127.0.0.1:$port" --data "$tmp/data" \
    --max-registrations-per-hour 0 2>"$tmp/server.log" &
pids+=($!)
wait_port "$port"

printf '%-34s %10s   %-22s %-22s\n' "load" "packets/s" "tcpdump: got / dropped" "sniffer: got / dropped"
chat() { # rate
    "$bin/chat-plain" bench --server "127.0.0.1:$port" --clients 50 --messages $(($1 * secs)) \
        --rate "$1" --no-room --register --prefix "r$1" --time-limit $((secs + 10)) --json
}
race "chat on lo, 2,500 msg/s" lo "" "tcp port $port" chat 2500
real=$tmp/real.pcap
cp "$last_pcap" "$real"
race "chat on lo, 25,000 msg/s" lo "" "tcp port $port" chat 25000

ip netns add "$ns"
ip -n "$ns" link add va mtu 65535 type veth peer name vb mtu 65535
ip -n "$ns" link set va up
ip -n "$ns" link set vb up
packets=$(tcpdump -r "$real" 2>/dev/null | wc -l)
for pps in 10000 100000; do
    loops=$(((pps * secs + packets - 1) / packets))
    race "replay of it, $pps packets/s" vb "$ns" "tcp" \
        ip netns exec "$ns" tcpreplay -i va --pps "$pps" --loop "$loops" --unique-ip "$real"
done
