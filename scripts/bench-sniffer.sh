#!/usr/bin/env bash
# The sniffer's reading speed, next to tshark doing the same work on the same
# capture in the same run, both pinned to one core:
#   sniffer read FILE --quiet --json         (every finding built, summary out)
#   tshark -r FILE -Y xmpp.message -V        (every message dissected, printed)
# and the number of message bodies each found, and peak memory at two capture
# sizes (it must not grow with the file).
#
#   scripts/bench-sniffer.sh [MiB]     default 1024 (the issue's 1 GB)
#
# The capture comes from xmpp-capgen (sniffer/src/bin/xmpp-capgen.rs), kept
# under target/bench/ between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
small=$((size / 4))
scripts/setup.sh --interop >/dev/null
cargo build --release -p sniffer --locked -q
mkdir -p target/bench
gen() { # MiB
    local f=target/bench/xmpp-$1m.pcap
    [ -s "$f" ] || target/release/xmpp-capgen --out "$f" --megabytes "$1" >&2
    echo "$f"
}
big=$(gen "$size")
little=$(gen "$small")
core=${BENCH_CORE:-0}

# Both tools read the file from the page cache, not the disk: each
# measurement first reads the whole file once, so the first one measured is
# not slowed by a cold cache (seen: 5.1 s cold against 3.1 s warm for 1 GB).
warm() { cat "$1" >/dev/null; }

measure_sniffer() { # file -> "seconds maxrss_kb frames messages"
    local t
    t=$(mktemp)
    warm "$1"
    /usr/bin/time -f "%e %M" -o "$t" taskset -c "$core" target/release/sniffer read "$1" --quiet --json >"$t.out"
    local totals
    totals=$(grep '"type":"totals"' "$t.out")
    local frames msgs
    frames=$(sed 's/.*"frames":\([0-9]*\).*/\1/' <<<"$totals")
    msgs=$(sed 's/.*"messages":\([0-9]*\).*/\1/' <<<"$totals")
    echo "$(cat "$t") $frames $msgs"
    rm -f "$t" "$t.out"
}

measure_tshark() { # file -> "seconds maxrss_kb bodies"
    local t
    t=$(mktemp)
    warm "$1"
    local bodies
    bodies=$( { /usr/bin/time -f "%e %M" -o "$t" taskset -c "$core" tshark -r "$1" -Y xmpp.message -V 2>/dev/null; } |
        grep -c '^ *BODY \[value=' || true)
    echo "$(cat "$t") $bodies"
    rm -f "$t"
}

bytes=$(stat -c %s "$big")
read -r s_secs s_rss s_frames s_msgs < <(measure_sniffer "$big")
read -r l_secs l_rss _ _ < <(measure_sniffer "$little")
read -r t_secs t_rss t_bodies < <(measure_tshark "$big")

mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "capture: $big, $mb MB, $s_frames frames (xmpp-capgen)"
awk -v b="$bytes" -v s="$s_secs" -v f="$s_frames" -v m="$s_msgs" -v r="$s_rss" \
    'BEGIN { printf "sniffer: %.2f s, %.0f MB/s, %.0f packets/s, %d message bodies, peak RSS %d KB\n", s, b/1e6/s, f/s, m, r }'
awk -v b="$bytes" -v s="$t_secs" -v f="$s_frames" -v m="$t_bodies" -v r="$t_rss" \
    'BEGIN { printf "tshark:  %.2f s, %.1f MB/s, %.0f packets/s, %d message bodies, peak RSS %d KB\n", s, b/1e6/s, f/s, m, r }'
awk -v s="$s_secs" -v t="$t_secs" 'BEGIN { printf "ratio:   sniffer is %.1fx tshark\n", t/s }'
echo "memory:  peak RSS $l_rss KB reading the $small MiB capture, $s_rss KB reading the $size MiB one"
if [ "$s_msgs" != "$t_bodies" ]; then
    echo "MISMATCH: sniffer found $s_msgs message bodies, tshark $t_bodies" >&2
    exit 1
fi
