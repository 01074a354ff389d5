#!/usr/bin/env bash
# Propagation latency of revocations across gateway replicas (not part of CI): a private
# redis-server (installed by .ci/run) and three release gateways on loopback; 1 000 token
# revocations through replica A; when replicas B and C list each one. Prints p50/p90/p99/max.
#
#   scripts/replicas_bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo bench --locked -p tokengate-gateway --bench replicas
