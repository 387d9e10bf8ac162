#!/usr/bin/env bash
# The Pinhole demo: installs what it needs (scripts/setup.sh), builds the
# filter and the CLI once (scripts/build.sh), then starts an MCP server and
# Envoy with pinhole_filter.wasm on loopback and shows the decisions for
# several identities (scripts/demo.py). Everything it starts is stopped at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh >&2
eval "$(bash scripts/build.sh)"
export PINHOLE_WASM PINHOLE_BIN ENVOY
exec "$ROOT/.venv/bin/python" scripts/demo.py "$@"
