#!/usr/bin/env bash
# Pinhole's fuzz targets (cargo-fuzz / libFuzzer; see docs/fuzzing.md).
#
#   scripts/fuzz.sh smoke            every target for FUZZ_SECONDS (default 20) s
#   scripts/fuzz.sh long [RUNS]      every target for RUNS executions (default 10000000)
#   scripts/fuzz.sh run TARGET [LIBFUZZER ARGS...]   one target, open-ended
#   scripts/fuzz.sh repro TARGET FILE...             run a target on saved inputs
#   scripts/fuzz.sh build            build the targets only
#   scripts/fuzz.sh seeds            regenerate fuzz/corpus/* with seedgen
#   scripts/fuzz.sh list             the target names
#
# Environment: FUZZ_TARGETS="a b" (a subset, in that order), FUZZ_SECONDS,
# FUZZ_SANITIZER (none | address; default none: the filter has no unsafe
# code, and without ASan the targets run 2-3x faster), FUZZ_NICE (default
# 10; the targets run one at a time under `nice`).
#
# Needs only rustup/cargo (stable is enough): installs cargo-fuzz into the
# user's cargo bin directory when it is missing. Targets run one at a time.
# Seeds come from fuzz/corpus/<target> (read-only); what libFuzzer learns goes
# to fuzz/target/fuzz-work/<target>; crashes to fuzz/artifacts/<target>/.
# Exit status: 0 when no target crashed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(pg_frontend pg_backend pg_session sql_classify mcp_decode sse jwt blob mask)
SANITIZER="${FUZZ_SANITIZER:-none}"
NICE="${FUZZ_NICE:-10}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# Instrumented builds differ per sanitizer: keep them apart, so switching
# does not rebuild everything.
if [ "$SANITIZER" = none ]; then
  TARGET_DIR="$ROOT/fuzz/target"
else
  TARGET_DIR="$ROOT/fuzz/target/sanitizer-$SANITIZER"
fi
BIN="$TARGET_DIR/$TRIPLE/release"
WORK="$ROOT/fuzz/target/fuzz-work"

# cargo-fuzz drives libFuzzer through rustc flags; sanitizers other than
# `none` need unstable flags, which a stable toolchain accepts with this.
export RUSTC_BOOTSTRAP=1

read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"

log() { printf '[fuzz] %s\n' "$*" >&2; }

ensure_cargo_fuzz() {
  if cargo fuzz --version >/dev/null 2>&1; then
    return
  fi
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}

build() {
  ensure_cargo_fuzz
  log "building ${TARGETS[*]} (sanitizer: $SANITIZER, debug assertions and overflow checks on)"
  local t0=$SECONDS
  # One cargo invocation for all targets when building them all.
  if [ "${#TARGETS[@]}" -eq "${#ALL_TARGETS[@]}" ]; then
    cargo fuzz build --release --debug-assertions --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR"
  else
    for t in "${TARGETS[@]}"; do
      cargo fuzz build --release --debug-assertions --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" "$t"
    done
  fi
  log "built in $((SECONDS - t0))s"
}

max_len() {
  case "$1" in
    blob) echo 16384 ;;
    pg_session | mcp_decode | sse) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

dict_args() {
  local d="$ROOT/fuzz/dict/$1.dict"
  if [ -f "$d" ]; then echo "-dict=$d"; fi
}

# run_target TARGET LOGFILE LIBFUZZER-ARGS...: runs one target from its seeds.
run_target() {
  local t="$1" logf="$2"
  shift 2
  mkdir -p "$WORK/$t" "$ROOT/fuzz/artifacts/$t"
  local dict
  dict="$(dict_args "$t")"
  # shellcheck disable=SC2086 # $dict is empty or one word
  nice -n "$NICE" "$BIN/$t" \
    -artifact_prefix="$ROOT/fuzz/artifacts/$t/" \
    -max_len="$(max_len "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    $dict "$@" "$WORK/$t" "$ROOT/fuzz/corpus/$t" >"$logf" 2>&1
}

stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

# campaign MODE LIBFUZZER-ARGS...: every target in turn, then a summary.
campaign() {
  local mode="$1"
  shift
  build
  local logs="$ROOT/fuzz/target/fuzz-logs"
  mkdir -p "$logs"
  local failed=() rows=()
  local t0=$SECONDS
  for t in "${TARGETS[@]}"; do
    local logf="$logs/$t.$mode.log" t1=$SECONDS status=ok
    log "$mode: $t ..."
    if ! run_target "$t" "$logf" "$@"; then
      status=CRASH
      failed+=("$t")
      log "$t FAILED; the log is $logf; the reproducer is in fuzz/artifacts/$t/"
      grep -m1 -E "panicked at|ERROR: libFuzzer|==ERROR" "$logf" >&2 || true
    fi
    local execs rate units
    execs="$(stat_of number_of_executed_units "$logf")"
    rate="$(stat_of average_exec_per_sec "$logf")"
    units="$(stat_of new_units_added "$logf")"
    rows+=("$(printf '%-14s %12s %9s %8s %6ss  %s' "$t" "${execs:-?}" "${rate:-?}" "${units:-?}" "$((SECONDS - t1))" "$status")")
  done
  printf '\n%-14s %12s %9s %8s %7s  %s\n' target executions exec/s "new" time result
  printf '%s\n' "${rows[@]}"
  printf '\n[fuzz] %s: %d target(s) in %ds (plus the build); logs in %s\n' \
    "$mode" "${#TARGETS[@]}" "$((SECONDS - t0))" "$logs"
  if [ "${#failed[@]}" -gt 0 ]; then
    printf '[fuzz] CRASHED: %s\n' "${failed[*]}" >&2
    return 1
  fi
}

cmd="${1:-smoke}"
shift || true
case "$cmd" in
  smoke)
    campaign smoke -max_total_time="${FUZZ_SECONDS:-20}"
    ;;
  long)
    campaign long -runs="${1:-10000000}"
    ;;
  run)
    t="${1:?usage: scripts/fuzz.sh run TARGET [LIBFUZZER ARGS...]}"
    shift
    TARGETS=("$t")
    build
    mkdir -p "$WORK/$t" "$ROOT/fuzz/artifacts/$t"
    # shellcheck disable=SC2046
    exec nice -n "$NICE" "$BIN/$t" -artifact_prefix="$ROOT/fuzz/artifacts/$t/" \
      -max_len="$(max_len "$t")" -timeout=10 -print_final_stats=1 $(dict_args "$t") \
      "$@" "$WORK/$t" "$ROOT/fuzz/corpus/$t"
    ;;
  repro)
    t="${1:?usage: scripts/fuzz.sh repro TARGET FILE...}"
    shift
    TARGETS=("$t")
    build
    exec "$BIN/$t" "$@"
    ;;
  build)
    build
    ;;
  seeds)
    cargo run --release --manifest-path fuzz/Cargo.toml -p pinhole-fuzz-support --bin seedgen
    ;;
  list)
    printf '%s\n' "${ALL_TARGETS[@]}"
    ;;
  *)
    sed -n '2,11p' "$0" >&2
    exit 2
    ;;
esac
