#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end tests
# that drive the real binaries over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --interop
# The end-to-end tests run the binaries, so build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
