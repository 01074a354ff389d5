#!/usr/bin/env bash
# The load benchmark (issue 8, item 4; see bench/load/README.md): builds the release gateway and
# the benchmark's own crate, then runs the driver, which prints the machine, the exact command
# and one markdown table (bare axum, tokengate warm / 10 000 tokens / introspect, jwt-authorizer,
# and the gateway against nginx as reverse proxies), for 1 and 2 server workers.
#
#   scripts/load_bench.sh [--duration SECS (default 10, at most 300)] [--warmup SECS (default 2)]
#                         [--workers 1,2] [--connections 32] [--threads 1] [--tokens 10000]
#                         [--only in-process|proxy]
#
# Bounded in time: 2 worker counts × 10 measured runs, each after a warm-up, plus 4 short first
# passes over the tokens: at most 20 × (2 + duration) + 4 × duration seconds, plus minting the
# tokens (≈ 10 s) and process start-ups: ≈ 5 min at the default 10 s, ≈ 3 min with --duration 5
# (measured: 176 s), plus the builds.
# Needs wrk and nginx (Debian: apt-get install wrk nginx). Exit status: 0 when everything was
# measured (missed targets included); non-zero on a build or harness failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_INCREMENTAL=0

cargo build --release --locked -p tokengate-gateway --bin tokengate-gateway
# A target dir of its own: the crate is outside the workspace and must not disturb its builds.
load_target="${LOAD_BENCH_TARGET_DIR:-$PWD/target/load}"
CARGO_TARGET_DIR="$load_target" cargo build --release --locked --manifest-path bench/load/Cargo.toml

LOAD_BENCH_COMMAND="scripts/load_bench.sh${*:+ $*}" exec "$load_target/release/load-bench" \
    --server "$load_target/release/load-server" \
    --gateway target/release/tokengate-gateway \
    "$@"
