"""`pinhole push` for an HTTP filter: an Envoy whose pinhole HTTP filter is
discovered from a file (ECDS; the HTTP twin of envoy/postgres-ecds.yaml) runs
the configuration the CLI writes, and a second push (revoking a subject) is
applied without a restart."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

import envoyctl
import harness

# Loopback Envoy: the pinhole HTTP filter from the ECDS file, then a direct
# response standing in for the upstream.
CONFIG = """\
# HTTP listener whose pinhole filter comes from {{ECDS_PATH}} (ECDS); test only.
node: { id: pinhole-http-ecds, cluster: pinhole }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{ADMIN_PORT}} } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: {{LISTEN_PORT}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "upstream" } }
          http_filters:
          - name: pinhole
            config_discovery:
              config_source:
                path_config_source: { path: "{{ECDS_PATH}}" }
                resource_api_version: V3
              type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def _push(artifacts, policy: Path, version: str, out: Path) -> dict:
    proc = subprocess.run(
        [str(artifacts.pinhole), "push", str(policy), "--target", "api", "--wasm", str(artifacts.wasm),
         "--version", version, "--out", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"pinhole push failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)



def _get(envoy: envoyctl.Envoy, path: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(envoy.listen_url + path, headers=headers, timeout=harness.REQUEST_TIMEOUT)


def test_push_delivers_an_http_filter_and_updates_it(artifacts, workdir: Path, policy_file: Path, tokens) -> None:
    d = workdir / "push-http"
    d.mkdir(exist_ok=True)
    ecds_path = d / "pinhole-ecds.json"
    summary = _push(artifacts, policy_file, "1", ecds_path)
    assert summary["listener"] == "http" and summary["vm_id"] == "pinhole", summary
    (d / "envoy.tpl.yaml").write_text(CONFIG)
    cfg = envoyctl.render(d / "envoy.tpl.yaml", d / "envoy.yaml", ECDS_PATH=ecds_path)
    envoy = envoyctl.Envoy(cfg, d, name="push-http").start(timeout=60)
    try:
        envoy.wait_ecds_reloads(1)
        r = _get(envoy, "/v1/pods", None)
        assert r.status_code == 401 and 'realm="pinhole"' in r.headers["www-authenticate"], r.text
        r = _get(envoy, "/v1/pods", tokens.analyst("alice"))
        assert r.status_code == 200 and r.text == "upstream", r.text
        r = _get(envoy, "/v1/admin/users", tokens.analyst("alice"))
        assert r.status_code == 403, r.text

        # v2 revokes alice: pushed from YAML, applied without a restart.
        v2 = workdir / "push-http-v2.yaml"  # beside the JWKS files it names
        v2.write_text(harness.policy_yaml(revoked_subject="alice"))
        _push(artifacts, v2, "2", ecds_path)
        envoy.wait_ecds_reloads(2)
        deadline = time.monotonic() + 10
        while (r := _get(envoy, "/v1/pods", tokens.analyst("alice"))).status_code == 200:
            assert time.monotonic() < deadline, "the pushed revocation never applied"
            time.sleep(0.1)
        assert r.status_code == 401 and "revoked" in r.text, r.text
        assert _get(envoy, "/v1/pods", tokens.analyst("bob")).status_code == 200
        assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == [], "temporary files left"
    finally:
        envoy.stop()
