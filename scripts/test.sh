#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end tests
# that drive the real binaries over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --interop
# No separate build step: the end-to-end tests build the binaries they run
# on first use (the `harness` crate runs `cargo build --workspace --bins
# --locked` once per test process), so they never run a stale build.
cargo test --workspace --locked "$@"
