#!/usr/bin/env bash
# Pinhole demo on a fresh machine: installs what it needs (scripts/setup.sh),
# builds the filter and the compiler (scripts/build.sh), then runs
# scripts/demo.py: the example policy (examples/mcp-tools/policy.yaml) in a real
# Envoy in front of a real MCP server, called as two identities, showing
# allowed, denied and filtered calls and refused tokens. Loopback only;
# everything it starts is stopped at the end.
#
#   scripts/demo.sh            run the demo
#   scripts/demo.sh --serve    ... and keep Envoy + the server up to try by hand
#   scripts/demo.sh --sse      the MCP server answers with SSE streams
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
eval "$(bash scripts/build.sh)"
exec "$ROOT/.venv/bin/python" scripts/demo.py "$@"
