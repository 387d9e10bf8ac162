"""Signed policies through ECDS (docs/policy.md §13, docs/deploying.md):
an HTTP filter whose configuration carries the publisher's key
(`publisher_key`) loads only blobs signed with it.

v1, signed by the publisher (`pinhole push --sign-key`), loads. v2 (which
revokes alice) is then delivered unsigned, signed by another key, and with a
bad signature — written around the CLI, as an attacker who can replace the
blob but not the publisher key would: each time Envoy takes the
configuration, the filter logs that the new policy was NOT loaded, keeps v1
in force (alice is still let in) and counts `pinhole_policy_load_failure`.
Finally v2 signed by the publisher loads and alice is refused."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx

import ecds
import envoyctl
import harness
from test_push_http import CONFIG


def _run(artifacts, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(artifacts.pinhole), *args], capture_output=True, text=True, timeout=60)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"pinhole {proc.args[1:]} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout



def _wait_log(envoy: envoyctl.Envoy, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = envoy.log_text()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in Envoy's log\n{envoy.log_tail()}")


def _load_failures(envoy: envoyctl.Envoy) -> int:
    status, body = envoy.admin_get("/stats/prometheus")
    assert status == 200, body
    m = re.search(r"^pinhole_policy_load_failure(?:\{[^}]*\})?\s+(\d+)", body, re.M)
    return int(m.group(1)) if m else 0


def _get(envoy: envoyctl.Envoy, path: str, token: str) -> httpx.Response:
    return httpx.get(envoy.listen_url + path, headers={"authorization": f"Bearer {token}"},
                     timeout=harness.REQUEST_TIMEOUT)


def test_only_policies_signed_by_the_publisher_load(artifacts, workdir: Path, policy_file: Path, tokens) -> None:
    d = workdir / "signed"
    d.mkdir(exist_ok=True)
    ecds_path = d / "pinhole-ecds.json"
    key, other = d / "publisher.key", d / "other.key"
    publisher = json.loads(_ok(_run(artifacts, "keygen", "--out", str(key), "--format", "json")))
    intruder = json.loads(_ok(_run(artifacts, "keygen", "--out", str(other), "--format", "json")))

    # v1: signed by the publisher; push puts the public key in the config.
    summary = json.loads(_ok(_run(
        artifacts, "push", str(policy_file), "--target", "api", "--wasm", str(artifacts.wasm),
        "--sign-key", str(key), "--version", "1", "--out", str(ecds_path), "--format", "json")))
    assert summary["publisher_key"] == publisher["public_key"], summary
    assert summary["signed_by"] == publisher["key_id"], summary
    plugin = json.loads(json.loads(ecds_path.read_text())["resources"][0]["typed_config"]["config"]
                        ["configuration"]["value"])
    assert plugin["publisher_key"] == publisher["public_key"], plugin

    # v2 revokes alice (beside the JWKS files it names).
    v2 = workdir / "signed-v2.yaml"
    v2.write_text(harness.policy_yaml(revoked_subject="alice"))
    unsigned = harness.compile_policy(artifacts.pinhole, v2, d / "v2.bin")
    _ok(_run(artifacts, "compile", str(v2), "-o", str(d / "v2-other.bin"), "--sign-key", str(other)))
    by_other = (d / "v2-other.bin").read_bytes()
    _ok(_run(artifacts, "compile", str(v2), "-o", str(d / "v2-signed.bin"), "--sign-key", str(key)))
    forged = bytearray((d / "v2-signed.bin").read_bytes())
    forged[-1] ^= 0x01  # the last signature byte

    # The CLI refuses to ship a v2 the filter would refuse.
    proc = _run(artifacts, "push", str(d / "v2.bin"), "--target", "api", "--wasm", str(artifacts.wasm),
                "--publisher-key", str(key) + ".pub", "--out", str(ecds_path))
    assert proc.returncode == 1 and "is not signed" in proc.stderr, (proc.returncode, proc.stderr)

    (d / "envoy.tpl.yaml").write_text(CONFIG)
    cfg = envoyctl.render(d / "envoy.tpl.yaml", d / "envoy.yaml", ECDS_PATH=ecds_path)
    envoy = envoyctl.Envoy(cfg, d, name="signed", env={}).start(timeout=60)
    try:
        envoy.wait_ecds_reloads(1)
        alice = tokens.analyst("alice")
        r = _get(envoy, "/v1/pods", alice)
        assert r.status_code == 200 and r.text == "upstream", r.text
        assert _get(envoy, "/v1/admin/users", alice).status_code == 403
        failures = _load_failures(envoy)

        # Each bad v2 is written around the CLI, keeping the publisher key.
        bad = [
            ("2", unsigned, f"policy blob is not signed, but a signature by publisher key {publisher['key_id']} is required"),
            ("3", by_other, f"policy blob is signed by key {intruder['key_id']}, but a signature by publisher key {publisher['key_id']} is required"),
            ("4", bytes(forged), f"policy blob signature by key {publisher['key_id']} does not verify"),
        ]
        for n, (version, blob, reason) in enumerate(bad, start=2):
            ecds.write(ecds_path, version, ecds.typed_extension_config(
                wasm=artifacts.wasm, vm_id="pinhole", env_keys=[], network=False,
                plugin_config=envoyctl.plugin_config("api", blob, listener="http",
                                                     publisher_key=publisher["public_key"])))
            envoy.wait_ecds_reloads(n)
            log = _wait_log(envoy, reason)
            line = next(ln for ln in log.splitlines() if reason in ln)
            assert "new policy NOT loaded, keeping the last good policy" in line, line
            # v1 still decides: alice (revoked only in v2) is let in.
            for _ in range(5):
                r = _get(envoy, "/v1/pods", alice)
                assert r.status_code == 200 and r.text == "upstream", (version, r.status_code, r.text)
            assert _get(envoy, "/v1/admin/users", alice).status_code == 403
            deadline = time.monotonic() + 10
            while _load_failures(envoy) <= failures:
                assert time.monotonic() < deadline, f"pinhole_policy_load_failure did not grow after push {version}"
                time.sleep(0.1)
            failures = _load_failures(envoy)

        # v2 signed by the publisher (the real CLI): loads, alice is revoked.
        _ok(_run(artifacts, "push", str(v2), "--target", "api", "--wasm", str(artifacts.wasm),
                 "--sign-key", str(key), "--version", "5", "--out", str(ecds_path)))
        envoy.wait_ecds_reloads(5)
        deadline = time.monotonic() + 10
        while (r := _get(envoy, "/v1/pods", alice)).status_code == 200:
            assert time.monotonic() < deadline, "the signed v2 never applied"
            time.sleep(0.1)
        assert r.status_code == 401 and "revoked" in r.text, r.text
        assert _get(envoy, "/v1/pods", tokens.analyst("bob")).status_code == 200
    finally:
        envoy.stop()
