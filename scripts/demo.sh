#!/usr/bin/env bash
# The toolkit's main job: the same chat over chat-plain and chat-tls under
# the sniffer, and what an attacker on the wire got from each, side by side.
#   scripts/demo.sh [--pace SECONDS] [--json]
# It captures live traffic on loopback, so it needs root (or a sniffer with
# CAP_NET_RAW); everything it starts is stopped, and its temporary files
# removed, when it ends or on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins --locked -q
if [ "$(id -u)" != 0 ]; then
    echo "demo: live capture needs root; run: sudo $0 $*" >&2
    exit 2
fi
exec target/debug/labs demo "$@"
