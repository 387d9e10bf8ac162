#!/usr/bin/env bash
# Build Pinhole's two artifacts (release):
#   target/wasm32-wasip1/release/pinhole_filter.wasm   the Envoy filter
#   target/release/pinhole                             the policy compiler CLI
#
#   scripts/build.sh            (run scripts/setup.sh once before)
#
# Prints the artifact paths as shell assignments on stdout, e.g.
#   eval "$(scripts/build.sh)"   → PINHOLE_WASM=... PINHOLE_BIN=... ENVOY=...
# which is how the end-to-end tests find them (tests/e2e/conftest.py falls
# back to these same default paths).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

locked=()
if [ "${CI:-}" = "true" ]; then locked=(--locked); fi

echo "[build] cargo build --release --target wasm32-wasip1 -p pinhole-filter -p pinhole-null-filter" >&2
# pinhole-null-filter: the benchmarks' "trivial Wasm filter" baseline (small, seconds to build).
cargo build "${locked[@]}" --release --target wasm32-wasip1 -p pinhole-filter -p pinhole-null-filter >&2
echo "[build] cargo build --release -p policy-compiler" >&2
cargo build "${locked[@]}" --release -p policy-compiler >&2

WASM="$ROOT/target/wasm32-wasip1/release/pinhole_filter.wasm"
BIN="$ROOT/target/release/pinhole"
[ -f "$WASM" ] || { echo "[build] ERROR: $WASM was not produced" >&2; exit 1; }
[ -x "$BIN" ] || { echo "[build] ERROR: $BIN was not produced" >&2; exit 1; }
echo "[build] $(du -h "$WASM" | cut -f1) $WASM" >&2

printf 'export PINHOLE_WASM=%q\n' "$WASM"
printf 'export PINHOLE_BIN=%q\n' "$BIN"
printf 'export ENVOY=%q\n' "$ROOT/.venv/bin/envoy"
