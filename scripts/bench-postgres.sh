#!/usr/bin/env bash
# PostgreSQL benchmark: pgbench through Envoy with and without Pinhole.
#
#   scripts/bench-postgres.sh                          5 rounds x 10 s per workload and mode (about 12 minutes)
#   scripts/bench-postgres.sh --rounds 3 --seconds 5   shorter
#   scripts/bench-postgres.sh --workloads select       only pgbench -S (the figures with targets)
#   scripts/bench-postgres.sh --json target/bench-postgres.json --check
#
# Installs what it needs (scripts/setup.sh: Envoy, PostgreSQL 15, pgbench),
# builds the release wasm and CLI (scripts/build.sh), then runs
# scripts/bench-postgres.py: a throwaway PostgreSQL 15 cluster (pgbench -i,
# plus a bench_customers table), Envoy with tcp_proxy only (A), with a null
# Wasm filter (N) and with the pinhole network filter + tcp_proxy (B), all
# --concurrency 1. Workload `select`: `pgbench -n -S -c 4 -j 2 -T SECS` in
# -M simple and -M prepared, alternating A N B; it prints each run's TPS and
# Envoy CPU per transaction, the medians, and the median ratio B/A per mode
# against the targets (>= 0.85 simple, >= 0.95 prepared). Workload `masked`:
# a pgbench script reading 20-100 rows of bench_customers per transaction
# through A, N, C (pinhole, caller exempt from masking) and B (pinhole,
# email, card and note masked), with Envoy CPU per transaction and per
# returned row. Loopback only; everything it starts is stopped at the end.
# Not a test: CI runs only a one-second smoke of it
# (tests/e2e/test_postgres_bench.py).
# How to read the figures: docs/benchmarks.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
eval "$(bash scripts/build.sh)"
exec "$ROOT/.venv/bin/python" scripts/bench-postgres.py "$@"
