#!/usr/bin/env bash
# Runs one cargo-fuzz target for SECONDS (default 600).
#   scripts/fuzz.sh [TARGET] [SECONDS]
# Targets: stream_parser (default), element_builders, sniffer_decode,
# sniffer_reassembly, sniffer_dissect.
# cargo-fuzz comes from crates.io; libFuzzer needs nightly-only compiler
# flags, which RUSTC_BOOTSTRAP=1 allows on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
target=stream_parser
if [[ "${1:-}" =~ ^[a-z_]+$ ]]; then
    target=$1
    shift
fi
secs=${1:-600}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
    -max_total_time="$secs" -max_len=4096 -print_final_stats=1
