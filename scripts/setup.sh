#!/usr/bin/env bash
# Installs what the toolkit needs beyond the Rust toolchain, on Debian.
# As root it installs; otherwise it prints the exact command and exits 2.
#
#   scripts/setup.sh             what the binaries need to build and run
#   scripts/setup.sh --interop   also the third-party software the tests
#                                run against: Prosody (Debian) and slixmpp
#                                (PyPI, in a venv under target/) for
#                                interoperability, tshark (Debian) to check the
#                                sniffer's pcaps and to race it in the benchmark,
#                                socat (Debian) as the do-nothing relay the
#                                proxy's latency is measured against, tcpdump
#                                (Debian) as the reference live capture and
#                                tcpreplay (Debian) to replay a real capture
#                                at a set packet rate, Chromium (Debian) to
#                                render the HTML reports in the tests
set -euo pipefail
cd "$(dirname "$0")/.."

interop=0
[ "${1:-}" = --interop ] && interop=1

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 2
fi

have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)      # bundled SQLite is C
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if command -v dpkg >/dev/null 2>&1; then
    # libpcap for the sniffer (live capture and pcap files).
    have_pkg libpcap-dev || need+=(libpcap-dev)
    if ((interop)); then
        have_pkg prosody || need+=(prosody)
        command -v tshark >/dev/null 2>&1 || need+=(tshark)
        command -v socat >/dev/null 2>&1 || need+=(socat)
        command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
        command -v tcpreplay >/dev/null 2>&1 || need+=(tcpreplay)
        command -v chromium >/dev/null 2>&1 || need+=(chromium)
        command -v curl >/dev/null 2>&1 || need+=(curl)
        # Lab 11 reads the server's database as its operator would.
        command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
        # A real terminal for the terminal UI's tests (they type into it
        # and read the screen back).
        command -v tmux >/dev/null 2>&1 || need+=(tmux)
        command -v python3 >/dev/null 2>&1 || need+=(python3)
        # Debian splits venv support (ensurepip) out of python3.
        python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
    fi
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
    # Debian starts a packaged server the moment it is installed. Prosody
    # must not: the tests run their own copy on a loopback port with a
    # throw-away config, and a system-wide XMPP server listening on every
    # interface is the last thing a lab machine needs. policy-rc.d is
    # Debian's switch for "do not start services now".
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    trap 'if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [[ " ${need[*]} " == *" prosody "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now prosody >/dev/null 2>&1 || true
    fi
fi

if ((interop)); then
    venv=target/interop-venv
    req=tests/interop/requirements.txt
    # Rebuilt when the pinned requirements change.
    if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
        echo "setup: installing slixmpp into $venv (from PyPI)" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
        cp "$req" "$venv/requirements.txt"
    fi
fi
