#!/usr/bin/env bash
# Pinhole's one test command: everything CI checks, in order, stopping at the
# first failure.
#
#   scripts/test.sh                 all stages
#   scripts/test.sh -k denied       all stages; extra arguments go to pytest
#
# Stages: setup (toolchain, .venv with Envoy and the MCP SDK) · rustfmt ·
# clippy (native, and the filter for wasm32-wasip1) · cargo test (native) ·
# the filter's unit tests compiled to wasm32-wasip1 and run under node:wasi ·
# release build of the .wasm and the `pinhole` CLI · end-to-end tests (real
# Envoy + the built .wasm + real MCP servers and clients, tests/e2e) · fuzz
# smoke (every cargo-fuzz target for FUZZ_SECONDS, default 10 s, from its
# seeds; scripts/fuzz.sh installs cargo-fuzz when missing; docs/fuzzing.md).
#
# Assumes only rustup/cargo, python3 and node >= 20 on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

locked=()
if [ "${CI:-}" = "true" ]; then locked=(--locked); fi

T0=$SECONDS
SUMMARY=()
CURRENT=""

on_exit() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -n "$CURRENT" ]; then
    printf '\n[test] FAILED at stage: %s (exit %d, after %ds total)\n' "$CURRENT" "$rc" "$((SECONDS - T0))" >&2
    printf '[test]   %s\n' "${SUMMARY[@]}" >&2
  fi
}
trap on_exit EXIT

# stage NAME COMMAND...   runs one stage, times it, stops everything on failure.
stage() {
  local name="$1"; shift
  CURRENT="$name"
  printf '\n[test] ==> %s\n' "$name" >&2
  local t=$SECONDS
  "$@"
  local dt=$((SECONDS - t))
  SUMMARY+=("$(printf '%-28s ok  %4ds' "$name" "$dt")")
  printf '[test] <== %s ok (%ds)\n' "$name" "$dt" >&2
  CURRENT=""
}

wasm_unit_tests() {
  CARGO_TARGET_WASM32_WASIP1_RUNNER="node $ROOT/scripts/wasi-run.mjs" \
    cargo test "${locked[@]}" -p pinhole-filter --target wasm32-wasip1
}

build() {
  local exports
  exports="$(bash scripts/build.sh)"
  eval "$exports"
}

e2e() {
  mkdir -p target
  "$ROOT/.venv/bin/python" -m pytest tests/e2e -q -ra \
    --junit-xml=target/e2e-junit.xml "$@"
}

# Every fuzz target for a few seconds: catches a target that no longer
# builds, a seed that crashes, a shallow regression. One build for all
# targets (fuzz/target), then FUZZ_SECONDS per target.
fuzz_smoke() {
  FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash scripts/fuzz.sh smoke
}

stage "setup"                 bash scripts/setup.sh
stage "rustfmt"               cargo fmt --all -- --check
stage "clippy (native)"       cargo clippy "${locked[@]}" --workspace --all-targets -- -D warnings
stage "clippy (wasm32-wasip1)" cargo clippy "${locked[@]}" -p pinhole-filter -p pinhole-null-filter --target wasm32-wasip1 -- -D warnings
stage "cargo test (native)"   cargo test "${locked[@]}" --workspace
stage "unit tests (wasm/node)" wasm_unit_tests
stage "release build"         build
stage "e2e (pytest)"          e2e "$@"
stage "fuzz smoke"            fuzz_smoke

printf '\n[test] all stages passed in %ds\n' "$((SECONDS - T0))" >&2
printf '[test]   %s\n' "${SUMMARY[@]}" >&2
