"""Policy hot reload on a PostgreSQL listener through ECDS
(envoy/postgres-ecds.yaml): the offboarded-contractor story.

A session is open under policy v1. v2, which revokes its subject, is pushed
(the ECDS file replaced atomically): the open session's next statement is
refused within seconds, new connections for that subject are refused, and
another identity working under load sees no failure at all. Then a corrupt
policy is pushed: Envoy accepts the config, the filter refuses to load the
blob and keeps the last good policy (v2) in force.

v1 and v2 are pushed with the real CLI (`pinhole push`: v1 from its compiled
blob, v2 straight from YAML). `pinhole push` refuses a corrupt policy, so the
corrupt push is written by ecds.py, bypassing the CLI as a broken pipeline
or a hand edit would."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import ecds
import envoyctl
import harness
import pg

VM_ID = "pinhole-postgres-ecds"


def _push(path: Path, version: str, artifacts, policy: Path) -> dict:
    """`pinhole push POLICY --target orders-db ... --out PATH` (YAML or blob)."""
    proc = subprocess.run(
        [str(artifacts.pinhole), "push", str(policy), "--target", pg.TARGET, "--listener", "postgres",
         "--wasm", str(artifacts.wasm), "--vm-id", VM_ID, "--version", version, "--out", str(path),
         "--format", "json"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"pinhole push failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    summary = json.loads(proc.stdout)
    assert summary["version"] == version and summary["target"] == pg.TARGET, summary
    # The password variable comes from the target's backend_password_env.
    assert summary["env_keys"] == [pg.PASSWORD_ENV], summary
    return summary


def _push_raw(path: Path, version: str, artifacts, plugin_config: str) -> None:
    """Write the ECDS file without the CLI (for content the CLI refuses)."""
    ecds.write(path, version, ecds.typed_extension_config(
        wasm=artifacts.wasm, plugin_config=plugin_config, vm_id=VM_ID, env_keys=[pg.PASSWORD_ENV]))



def test_revocation_reaches_open_sessions_without_a_restart(artifacts, workdir: Path, pg_cluster, pg_tokens) -> None:
    pg_cluster.set_auth("scram-sha-256")
    d = workdir / "reload"
    d.mkdir(exist_ok=True)
    for name in ("jwks-corp.json", "jwks-edge.json", "jwks-ci.json"):
        (d / name).write_bytes((workdir / name).read_bytes())
    (d / "v1.yaml").write_text(pg.policy_yaml(revoked_subject="mallory"))
    (d / "v2.yaml").write_text(pg.policy_yaml(revoked_subject="contractor-7"))
    harness.compile_policy(artifacts.pinhole, d / "v1.yaml", d / "v1.bin")
    path = d / "pinhole-ecds.json"
    _push(path, "1", artifacts, d / "v1.bin")
    cfg = envoyctl.render(envoyctl.ROOT / "envoy" / "postgres-ecds.yaml", d / "envoy.yaml",
                          UPSTREAM_PORT=pg_cluster.port, ECDS_PATH=path)
    envoy = envoyctl.Envoy(cfg, d, name="ecds", env={pg.PASSWORD_ENV: pg_cluster.password}).start(timeout=60)
    try:
        envoy.wait_ecds_reloads(1)
        port = envoy.listen_port
        contractor = pg_tokens.analyst("contractor-7", lifetime=900)
        session = pg.connect("psycopg", port, "contractor-7", contractor)
        assert session.run("SELECT count(*) FROM orders")[0][0] >= 1

        # Another identity under load the whole time: new connections and
        # statements, none may fail.
        failures: list[str] = []
        done = 0
        stop = threading.Event()

        def load() -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    with pg.connect("psycopg", port, "bob", pg_tokens.analyst("bob")) as s:
                        for _ in range(20):
                            s.run("SELECT count(*) FROM orders")
                            done += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    failures.append(repr(e))

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(1.0)

        pushed = time.monotonic()
        _push(path, "2", artifacts, d / "v2.yaml")
        refused = None
        while time.monotonic() - pushed < 15:
            try:
                session.run("SELECT count(*) FROM orders")
            except pg.DbError as e:
                refused = e
                break
            time.sleep(0.1)
        latency = time.monotonic() - pushed
        assert refused is not None, "the open session was never refused after the push"
        print(f"revocation latency for an open session: {latency:.2f} s")
        assert latency <= 5.0, f"revocation took {latency:.2f} s"
        assert refused.sqlstate == "28000" and "revoked" in refused.message, refused
        session.close()

        # New connections for the contractor are refused at login.
        r = pg.psql(port, "contractor-7", pg_tokens.analyst("contractor-7"), "SELECT 1")
        assert r.returncode != 0 and "revoked" in r.stderr, r.stderr

        # `pinhole push` refuses a corrupt blob (exit 1) and leaves the ECDS file alone.
        before = path.read_bytes()
        broken = bytearray((d / "v1.bin").read_bytes())
        broken[len(broken) // 2] ^= 0xFF
        (d / "broken.bin").write_bytes(bytes(broken))
        proc = subprocess.run(
            [str(artifacts.pinhole), "push", str(d / "broken.bin"), "--target", pg.TARGET,
             "--wasm", str(artifacts.wasm), "--out", str(path)],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "digest mismatch" in proc.stderr, (proc.returncode, proc.stderr)
        assert path.read_bytes() == before

        # A corrupt blob written around the CLI: Envoy takes the config, the
        # filter keeps v2.
        _push_raw(path, "3", artifacts, envoyctl.plugin_config(pg.TARGET, "!!!not base64", listener="postgres"))
        envoy.wait_ecds_reloads(3)
        deadline = time.monotonic() + 10
        while "keeping the last good policy" not in envoy.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "keeping the last good policy" in envoy.log_text()
        r = pg.psql(port, "bob", pg_tokens.analyst("bob"), "SELECT count(*) FROM orders")
        assert r.returncode == 0, r.stderr
        r = pg.psql(port, "contractor-7", pg_tokens.analyst("contractor-7"), "SELECT 1")
        assert r.returncode != 0 and "revoked" in r.stderr, r.stderr

        time.sleep(0.5)
        stop.set()
        t.join(timeout=30)
        assert not failures, failures[:3]
        assert done > 20, done
        print(f"other identity: {done} statements, 0 failures during the pushes")
    finally:
        envoy.stop()
