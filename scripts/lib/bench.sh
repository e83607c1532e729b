# Sourced by the benchmark scripts: a scratch folder ($tmp) and the list of
# processes of one run ($pids), stopped and removed however the script ends
# (a script with more to undo defines bench_cleanup_more), and two helpers
# for loopback ports.
tmp=$(mktemp -d)
pids=()
bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
    if declare -F bench_cleanup_more >/dev/null; then bench_cleanup_more; fi
}
trap bench_cleanup EXIT INT TERM
# A TCP port on 127.0.0.1 free now (the kernel's pick).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 10 s for something to listen on 127.0.0.1:PORT.
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# Starts a program on port 0, in this shell (so cleanup stops it), with its
# stderr in LOG.
launch() { # log command...
    local log=$1
    shift
    "$@" >/dev/null 2>"$log" &
    pids+=($!)
}
# The address in a program's readiness line (": ready listen=ADDR").
address() { # log
    for _ in $(seq 200); do
        if grep -q ': ready listen=' "$1" 2>/dev/null; then
            grep -o 'ready listen=[^ ]*' "$1" | head -1 | cut -d= -f2
            return 0
        fi
        sleep 0.05
    done
    echo "did not start:" >&2
    cat "$1" >&2
    return 1
}
