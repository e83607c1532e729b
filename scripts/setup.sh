#!/usr/bin/env bash
# Installs what the toolkit needs beyond the Rust toolchain, on Debian.
# As root it installs; otherwise it prints the exact command and exits 2.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 2
fi

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)      # bundled SQLite is C
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# libpcap for the sniffer (live capture and pcap files).
if command -v dpkg >/dev/null 2>&1; then
    dpkg -s libpcap-dev >/dev/null 2>&1 || need+=(libpcap-dev)
fi

if ((${#need[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: missing: ${need[*]} (install them with your package manager)" >&2
        exit 2
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing system packages; run:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
        exit 2
    fi
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
