#!/usr/bin/env bash
# User-space instructions per proxied request, the gateway against nginx (issue 8, the
# "gateway ≥ 0.8× nginx" target): each proxy runs under `valgrind --tool=callgrind` in front of
# the same `load-server bare` upstream, loaded by `wrk -t1 -c8` for 4 s and then, in a fresh
# process, for 10 s; the difference of the two totals over the difference of the two request
# counts cancels start-up and shut-down. callgrind counts instructions, not time, so the
# figures repeat on a busy machine (kernel work — the loopback TCP both proxies pay alike — is
# not counted). The gateway runs with one `public` route (no auth: the proxying alone) and one
# tokio worker; nginx with one worker process (master_process off, so the measured process is
# the one that proxies). The gateway needs an issuer's key set to start: nginx serves
# bench/load/proxy-jwks.json (a public key; no token is ever checked).
#
#   scripts/proxy_instructions.sh [GATEWAY_BINARY]   (default: builds target/release/tokengate-gateway)
#
# Needs valgrind, wrk, nginx (Debian: apt-get install valgrind wrk nginx). ≈ 2 min plus builds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_INCREMENTAL=0

gateway="${1:-}"
if [[ -z "$gateway" ]]; then
    cargo build --release --locked -p tokengate-gateway --bin tokengate-gateway
    gateway=target/release/tokengate-gateway
fi
load_target="${LOAD_BENCH_TARGET_DIR:-$PWD/target/load}"
CARGO_TARGET_DIR="$load_target" cargo build --release --locked --manifest-path bench/load/Cargo.toml --bin load-server

dir="$(mktemp -d /tmp/proxy-instructions.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port="$(free_port)"; jwks_port="$(free_port)"; nginx_port="$(free_port)"; gateway_port="$(free_port)"
cp bench/load/proxy-jwks.json "$dir/jwks.json"

"$load_target/release/load-server" bare --workers 1 --listen "127.0.0.1:$upstream_port" >"$dir/upstream.log" 2>&1 &
pids+=($!)

nginx_conf() { # name, then the server blocks
    cat <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $dir/$1.pid;
error_log $dir/$1-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/cb; proxy_temp_path $dir/px; fastcgi_temp_path $dir/fc;
    uwsgi_temp_path $dir/uw; scgi_temp_path $dir/sc;
$2
}
EOF
}
# The proxy measured; and a plain nginx (not under valgrind) serving the gateway's key set.
nginx_conf nginx "    upstream bench_upstream { server 127.0.0.1:$upstream_port; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }" >"$dir/nginx.conf"
nginx_conf jwks "    server { listen 127.0.0.1:$jwks_port; location / { root $dir; } }" >"$dir/jwks-nginx.conf"

cat >"$dir/gateway.toml" <<EOF
listen = "127.0.0.1:$gateway_port"
upstream = "http://127.0.0.1:$upstream_port"

[[issuers]]
issuer = "https://issuer.invalid"
jwks_uri = "http://127.0.0.1:$jwks_port/jwks.json"
audiences = ["proxy-instructions"]
algorithms = ["RS256"]

[[routes]]
path = "/*"
mode = "public"
EOF

nginx -c "$dir/jwks-nginx.conf" >"$dir/jwks-nginx.log" 2>&1 &
pids+=($!)

wait_for() { # url
    for _ in $(seq 240); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.25
    done
    echo "proxy_instructions: $1 never answered" >&2
    return 1
}

# One measured process: prints "<requests> <instructions>".
run_once() { # name seconds port command...
    local name="$1" secs="$2" port="$3"
    shift 3
    local out="$dir/$name-$secs.callgrind"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$dir/$name-$secs.log" 2>&1 &
    local pid=$!
    wait_for "http://127.0.0.1:$port/api/items"
    local requests
    requests="$(wrk -t1 -c8 -d"${secs}s" "http://127.0.0.1:$port/api/items" | awk '/requests in/ {print $1}')"
    kill -INT "$pid" 2>/dev/null || true
    kill -QUIT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$requests $(awk '/^(summary|totals):/ {print $2; exit}' "$out")"
}

measure() { # name port command...
    local name="$1" port="$2"
    shift 2
    local short long
    short="$(run_once "$name" 4 "$port" "$@")"
    long="$(run_once "$name" 10 "$port" "$@")"
    read -r n1 i1 <<<"$short"
    read -r n2 i2 <<<"$long"
    echo "| $name | $n1 / $n2 | $(( (i2 - i1) / (n2 - n1) )) |"
}

wait_for "http://127.0.0.1:$upstream_port/api/items"
echo "| proxy | requests (4 s / 10 s runs) | user-space instructions per request |"
echo "| --- | ---: | ---: |"
measure nginx "$nginx_port" nginx -c "$dir/nginx.conf"
wait_for "http://127.0.0.1:$jwks_port/jwks.json"
export TOKIO_WORKER_THREADS=1 RUST_LOG=warn
measure tokengate-gateway "$gateway_port" "$gateway" --config "$dir/gateway.toml"
echo "(callgrind, wrk -t1 -c8, $(nproc) cores; run directory $dir)"
