"""Human approval and just-in-time elevation on a PostgreSQL listener
(envoy/postgres-ecds.yaml), with the real CLI, Envoy and PostgreSQL.

Review: dana (dba) runs an ALTER TABLE held by `ddl-needs-review`; the
refusal names a request id; olga approves it with `pinhole approve` from
Envoy's audit log; the grant is pushed with the policy; the same statement
then succeeds in dana's *open* session, a different statement is still held,
and once the grant's window ends the same statement is held again. dana
cannot approve her own request, and a forged grant is refused by `pinhole
push` (the filter's own check of grants in a blob is unit-tested in
filter/src/grant/tests.rs). The audit log verifies as an intact chain.

JIT: sam (role sre) gets DDL only while a `pinhole elevate` grant lasts, in
an open session, and loses it when the window ends."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path

import ecds
import envoyctl
import pg

VM_ID = "pinhole-approvals"
TTL = 6  # seconds: short windows, real time


def _policy(workdir: Path) -> str:
    text = pg.policy_yaml(revoked_subject="mallory")
    text = text.replace(
        "sql: { statements: [create, alter] } }",
        "sql: { statements: [create, alter] }, approvers: [leads], grant_ttl: 1m }",
    )
    assert "approvers: [leads]" in text
    text = text.replace("roles:\n", "roles:\n  sre:\n    issuer: corp\n    groups: [sre]\n", 1)
    olga = (workdir / "olga.key.pub").read_text().strip()
    dana = (workdir / "dana.key.pub").read_text().strip()
    return text + f"""
approvers:
  leads:
    - {{ name: olga, subject: olga, ed25519: "{olga}" }}
    - {{ name: dana, subject: dana, ed25519: "{dana}" }}

elevation:
  - {{ role: dba, eligible: [sre], max: 1m, approvers: [leads] }}
"""


def _run(artifacts, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(artifacts.pinhole), *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, f"pinhole {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc



class Rig:
    def __init__(self, artifacts, d: Path, envoy: envoyctl.Envoy, ecds_path: Path) -> None:
        self.artifacts, self.d, self.envoy, self.path = artifacts, d, envoy, ecds_path
        self.pushes = 1

    def push(self, *grants: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["push", str(self.d / "policy.yaml"), "--target", pg.TARGET, "--listener", "postgres",
                "--wasm", str(self.artifacts.wasm), "--vm-id", VM_ID, "--version", f"v{self.pushes + 1}",
                "--out", str(self.path)]
        for g in grants:
            args += ["--grants", str(g)]
        proc = _run(self.artifacts, *args, ok=ok)
        if proc.returncode == 0:
            self.pushes += 1
            self.envoy.wait_ecds_reloads(self.pushes)
        return proc


def _until(pred, timeout: float = 8.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    return last


def _held(session, sql: str) -> pg.DbError:
    try:
        session.run(sql)
    except pg.DbError as e:
        return e
    raise AssertionError(f"{sql!r} was not held")


def test_review_approve_expire_and_jit(artifacts, workdir: Path, pg_cluster, pg_tokens) -> None:
    pg_cluster.set_auth("scram-sha-256")
    d = workdir / "approvals"
    d.mkdir(exist_ok=True)
    for name in ("jwks-corp.json", "jwks-edge.json", "jwks-ci.json"):
        (d / name).write_bytes((workdir / name).read_bytes())
    for who in ("olga", "dana", "mallory"):
        _run(artifacts, "keygen", "--out", str(d / f"{who}.key"))
    (d / "policy.yaml").write_text(_policy(d))
    path = d / "pinhole-ecds.json"
    _run(artifacts, "push", str(d / "policy.yaml"), "--target", pg.TARGET, "--listener", "postgres",
         "--wasm", str(artifacts.wasm), "--vm-id", VM_ID, "--version", "v1", "--out", str(path))
    cfg = envoyctl.render(envoyctl.ROOT / "envoy" / "postgres-ecds.yaml", d / "envoy.yaml",
                          UPSTREAM_PORT=pg_cluster.port, ECDS_PATH=path)
    envoy = envoyctl.Envoy(cfg, d, name="approvals", env={pg.PASSWORD_ENV: pg_cluster.password}).start(timeout=60)
    try:
        envoy.wait_ecds_reloads(1)
        rig = Rig(artifacts, d, envoy, path)
        port = envoy.listen_port
        table = f"appr_{int(time.time() * 1000) % 10**9}"
        admin = pg_cluster.admin
        admin(f"CREATE TABLE public.{table} (id int)")
        admin(f"ALTER TABLE public.{table} OWNER TO {pg.BACKEND_USER}")
        alter = f"ALTER TABLE public.{table} ADD COLUMN note text"
        other = f"ALTER TABLE public.{table} ADD COLUMN other text"

        dana = pg.connect("psycopg", port, "dana", pg_tokens.dba("dana", lifetime=900))
        # 1. Held, with a request id.
        e = _held(dana, alter)
        assert e.sqlstate == "42501", e
        m = re.search(r"request (rq-[0-9a-f]{16})", e.message)
        assert m and "pinhole approve" in e.message and "leads" in e.message, e.message
        request = m.group(1)
        columns = lambda: {r[0] for r in admin(  # noqa: E731
            f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'")}
        assert "note" not in columns()

        # The audit event of the hold carries what the approver needs.
        log = envoy.log_path
        assert _until(lambda: request in envoy.log_text(), timeout=25), "the hold is not in the audit log"

        # 2. Self-approval is refused; an approver outside the policy too.
        p = _run(artifacts, "approve", request, "--from", str(log), "--policy", str(d / "policy.yaml"),
                 "--key", str(d / "dana.key"), "--yes", ok=False)
        assert p.returncode == 1 and "cannot approve its own request" in p.stderr, p.stderr
        p = _run(artifacts, "approve", request, "--from", str(log), "--policy", str(d / "policy.yaml"),
                 "--key", str(d / "mallory.key"), "--yes", ok=False)
        assert p.returncode == 1 and "belongs to no approver" in p.stderr, p.stderr

        # 3. olga approves, for TTL seconds; the grant is pushed with the policy.
        grant = d / "alter.grant"
        p = _run(artifacts, "approve", request, "--from", str(log), "--policy", str(d / "policy.yaml"),
                 "--key", str(d / "olga.key"), "--for", f"{TTL}s", "--yes", "-o", str(grant))
        assert alter in p.stderr and "dana" in p.stderr, p.stderr  # it showed what is approved
        approved_at = time.monotonic()
        rig.push(grant)

        # The same statement now runs, in the session opened before the push.
        ran = _until(lambda: _try(dana, alter) is True)
        assert ran is True, f"the approved statement still fails: {_try(dana, alter)}"
        assert "note" in columns()
        # A different statement with the same grant is still held.
        e = _held(dana, other)
        assert e.sqlstate == "42501" and "request rq-" in e.message, e
        assert "other" not in columns()
        # Another subject cannot use dana's grant (its own request id differs).
        with pg.connect("psycopg", port, "erik", pg_tokens.dba("erik")) as erik:
            e = _held(erik, f"ALTER TABLE public.{table} DROP COLUMN note")
            assert e.sqlstate == "42501"

        # The audit trail names the grant and the approver.
        # (Envoy writes its log file in batches: allow for the flush.)
        text = _until(lambda: '"grant":{"approver":"olga"' in envoy.log_text(), timeout=25)
        assert text, "no audit event names olga's grant"

        # 4. After the window the same statement is held again.
        admin(f"ALTER TABLE public.{table} DROP COLUMN note")
        time.sleep(max(0.0, TTL + 1.2 - (time.monotonic() - approved_at)))
        e = _held(dana, alter)
        assert e.sqlstate == "42501" and request in e.message, e
        assert "note" not in columns()
        dana.close()

        # 5. A forged grant (signed by a key the policy does not list under
        # that name) is refused by the CLI, and dropped by the filter when it
        # reaches it inside a blob anyway.
        claims = json.loads(base64.urlsafe_b64decode(
            grant.read_text().strip().splitlines()[-1].split(".")[2] + "=="))
        forged = d / "forged.grant"
        p = _run(artifacts, "approve", request, "--from", str(log), "--policy", str(d / "policy.yaml"),
                 "--key", str(d / "olga.key"), "--for", "50s", "--yes", "-o", str(forged))
        tok = forged.read_text().strip().splitlines()[-1]
        body, _sig = tok.rsplit(".", 1)
        other_sig = grant.read_text().strip().splitlines()[-1].rsplit(".", 1)[1]
        forged.write_text(f"{body}.{other_sig}\n")
        p = rig.push(forged, ok=False)
        assert p.returncode == 1 and "does not verify" in p.stderr, p.stderr
        assert claims["approver"] == "olga"

        # 6. JIT: sam (sre) gets dba for TTL seconds, in an open session.
        sam = pg.connect("psycopg", port, "sam", str(pg_tokens.keys.mint("corp", "sam", groups=["sre"], lifetime=900)))
        e = _held(sam, f"SELECT count(*) FROM public.{table}")
        assert e.sqlstate == "42501", e  # sre alone may not even read
        p = _run(artifacts, "elevate", "--subject", "sam", "--role", "dba", "--for", "2m", "--reason", "incident 7",
                 "--policy", str(d / "policy.yaml"), "--key", str(d / "olga.key"), ok=False)
        assert p.returncode == 1 and "at most 60 s" in p.stderr, p.stderr
        p = _run(artifacts, "elevate", "--subject", "olga", "--role", "dba", "--for", "30s", "--reason", "me",
                 "--policy", str(d / "policy.yaml"), "--key", str(d / "olga.key"), ok=False)
        assert p.returncode == 1 and "elevates themselves" in p.stderr, p.stderr
        jit = d / "sam.grant"
        _run(artifacts, "elevate", "--subject", "sam", "--role", "dba", "--for", f"{TTL}s", "--reason", "incident 7",
             "--policy", str(d / "policy.yaml"), "--key", str(d / "olga.key"), "-o", str(jit))
        granted_at = time.monotonic()
        rig.push(jit)
        ok = _until(lambda: _try(sam, f"SELECT count(*) FROM public.{table}") is True)
        assert ok is True, _try(sam, f"SELECT count(*) FROM public.{table}")
        # DDL under the elevated role is a dba's: still held for review.
        e = _held(sam, f"ALTER TABLE public.{table} ADD COLUMN jit text")
        assert e.sqlstate == "42501" and "request rq-" in e.message
        assert _try(sam, f"INSERT INTO public.{table} (id) VALUES (7)") is True
        time.sleep(max(0.0, TTL + 1.2 - (time.monotonic() - granted_at)))
        e = _held(sam, f"SELECT count(*) FROM public.{table}")
        assert e.sqlstate == "42501", e
        # The elevated statements are audited with the grant.
        assert _until(lambda: '"elevated":[{"approver":"olga"' in envoy.log_text(), timeout=25)
        sam.close()
        v = _run(artifacts, "audit", "verify", str(envoy.log_path), ok=False)
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        envoy.stop()


def _try(session, sql: str):
    try:
        session.run(sql)
        return True
    except pg.DbError as e:
        return e
