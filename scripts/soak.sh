#!/usr/bin/env bash
# Soak test: real Envoy with Pinhole in front of two MCP servers and
# PostgreSQL 15, mixed MCP and PostgreSQL clients checking every decision,
# `pinhole push` replacing the policies every minute, Envoy's memory sampled
# every 10 s (tests/e2e/soak.py has the details and the memory rule).
#
#   scripts/soak.sh                                 30 minutes (issue 7)
#   scripts/soak.sh --duration 300                  5 minutes
#   scripts/soak.sh --duration 600 --json soak.json --push-interval 30
#   scripts/soak.sh --help                          every option
#
# Runs scripts/setup.sh and scripts/build.sh first (SOAK_SKIP_BUILD=1 skips
# them when the artifacts are fresh), then the soak under `nice` (SOAK_NICE,
# default 10). Exit status 0 only when no request failed, every push was
# applied and Envoy's memory did not clearly grow.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${SOAK_SKIP_BUILD:-}" != 1 ]; then
  bash scripts/setup.sh
  eval "$(bash scripts/build.sh)"
fi

exec nice -n "${SOAK_NICE:-10}" "$ROOT/.venv/bin/python" tests/e2e/soak.py "$@"
