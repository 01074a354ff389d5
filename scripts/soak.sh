#!/usr/bin/env bash
# The soak test (not part of CI): builds the release gateway and the soak driver, then runs the
# gateway on loopback under load while the testkit issuer rotates keys every 30 s, fails its JWKS
# endpoint for a minute and hangs its introspection endpoint for a minute. Prints a markdown
# summary; exits non-zero on a wrong verdict, a 5xx on a local route, or RSS drift >= 10 %.
#
#   scripts/soak.sh [--duration SECS (default 360, at most 600)] [--workers N (default 8)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked -p tokengate-gateway -p tokengate-tests --bin tokengate-gateway --bin soak
exec target/release/soak --gateway target/release/tokengate-gateway "$@"
