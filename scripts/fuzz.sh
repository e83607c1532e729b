#!/usr/bin/env bash
# Fuzzes the stream parser for SECONDS (default 600) with cargo fuzz.
#   scripts/fuzz.sh [SECONDS]
# cargo-fuzz comes from crates.io; libFuzzer needs nightly-only compiler
# flags, which RUSTC_BOOTSTRAP=1 allows on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run stream_parser -- \
    -max_total_time="$secs" -max_len=4096 -print_final_stats=1
