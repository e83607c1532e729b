# Sourced by the benchmark scripts: writes a Prosody configuration for a
# benchmark run on loopback (registration open, a MUC component, the lab
# certificate, STARTTLS offered but not required, logging errors only).
#
#   prosody_config DIR PORT CERTS     -> DIR/prosody.cfg.lua
prosody_config() {
    local dir=$1 port=$2 certs=$3
    mkdir -p "$dir"
    cat >"$dir/prosody.cfg.lua" <<EOF
run_as_root = true
pidfile = "$dir/prosody.pid"
data_path = "$dir"
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "register"; "ping"; "presence"; "message"; "offline"; "posix" }
modules_disabled = { "s2s"; "http" }
allow_registration = true
min_seconds_between_registrations = 0
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
ssl = { certificate = "$certs/server.pem", key = "$certs/server.key" }
log = { { levels = { min = "error" }, to = "console" } }
VirtualHost "localhost"
Component "conference.localhost" "muc"
EOF
}
