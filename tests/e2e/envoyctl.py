"""Render, validate, start and stop Envoy for the tests (and the demo).

    path = render("envoy/mcp.yaml", out, WASM=..., UPSTREAM_PORT=..., PLUGIN_CONFIG=plugin_config("tools", blob))
    validate(path)                       # envoy --mode validate -c path
    with Envoy(path, workdir) as envoy:  # started on free loopback ports
        envoy.listen_url                 # http://127.0.0.1:<port>

The shipped configs in envoy/ are templates with {{ADMIN_PORT}},
{{LISTEN_PORT}}, {{UPSTREAM_PORT}}, {{WASM}} and {{PLUGIN_CONFIG}} (and
{{PASSWORD_ENV}} in envoy/postgres.yaml: the name of the variable holding the
backend password, which `Envoy(..., env={NAME: password})` sets). ADMIN_PORT
and LISTEN_PORT default to 0: the kernel picks free ports at bind time (no
race between choosing a port and binding it), and the harness learns them
from --admin-address-path and the admin API's /listeners.

Every Envoy is started with --use-dynamic-base-id (several run at once) and
--concurrency 1, logs to a file, and is stopped by its PID.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def envoy_binary() -> str:
    """$ENVOY, else the project venv's envoy (scripts/setup.sh), else PATH."""
    env = os.environ.get("ENVOY")
    if env:
        return env
    local = ROOT / ".venv" / "bin" / "envoy"
    if local.exists():
        return str(local)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no envoy binary: run scripts/setup.sh (or set ENVOY)")
    return found


def plugin_config(target: str, blob: bytes | str, **extra: Any) -> str:
    """The filter's configuration JSON: {"target": ..., "policy": base64(blob)}.

    `blob` may be bytes (encoded here) or an already-encoded base64 string
    (so tests can pass deliberately broken base64)."""
    policy = base64.b64encode(blob).decode() if isinstance(blob, (bytes, bytearray)) else blob
    return json.dumps({"target": target, "policy": policy, **extra})


def render(template: str | Path, out: str | Path, **values: Any) -> Path:
    """Replace every {{NAME}} in `template` and write the result to `out`.

    PLUGIN_CONFIG is written as a double-quoted YAML string (JSON string
    escaping is valid YAML); WASM as a plain absolute path; numbers as is.
    ADMIN_PORT and LISTEN_PORT default to 0. A placeholder left without a
    value is an error."""
    values.setdefault("ADMIN_PORT", 0)
    values.setdefault("LISTEN_PORT", 0)
    text = Path(template).read_text()

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise KeyError(f"{template}: no value for placeholder {{{{{name}}}}}")
        value = values[name]
        if name == "PLUGIN_CONFIG":
            return json.dumps(value if isinstance(value, str) else json.dumps(value))
        if name == "WASM":
            return str(Path(value).resolve())
        return str(value)

    rendered = PLACEHOLDER.sub(sub, text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(rendered)
    return out


def validate(config: str | Path, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate -c config`; raises with Envoy's output when invalid."""
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id", "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or " OK" not in proc.stdout + proc.stderr:
        raise AssertionError(
            f"envoy --mode validate -c {config} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def stop_process(proc: "subprocess.Popen[Any] | None", timeout: float = 10) -> None:
    """Stop one process we started, by its PID (its own process group):
    SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


class EnvoyError(RuntimeError):
    pass


class Envoy:
    """One Envoy process on loopback. Use as a context manager or call
    start()/stop(); stop() kills by PID and is safe to call twice."""

    def __init__(self, config: str | Path, workdir: str | Path, *, name: str | None = None,
                 log_level: str = "info", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.config = Path(config)
        self.workdir = Path(workdir)
        self.name = name or self.config.stem
        self.log_level = log_level
        self.extra_args = extra_args or []
        # Extra environment variables for the Envoy process (on top of ours):
        # e.g. the backend password a postgres listener's VM reads through
        # vm_config.environment_variables.host_env_keys.
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_port: int | None = None
        self.listen_ports: dict[str, int] = {}
        self.log_path = self.workdir / f"{self.name}.envoy.log"
        self._admin_address_path = self.workdir / f"{self.name}.admin-address"

    # ---- lifecycle ------------------------------------------------------------

    def start(self, *, timeout: float = 30) -> "Envoy":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._admin_address_path.unlink(missing_ok=True)
        cmd = [
            envoy_binary(),
            "-c", str(self.config),
            "--use-dynamic-base-id",
            "--concurrency", "1",
            "-l", self.log_level,
            "--admin-address-path", str(self._admin_address_path),
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        try:
            # Own process group: stop() can reach Envoy even if it forks, and a
            # Ctrl-C in the terminal does not race our orderly shutdown.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         env={**os.environ, **self.env} if self.env else None)
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.admin_port is None and self._admin_address_path.exists():
                text = self._admin_address_path.read_text().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port is not None:
                try:
                    status, body = self.admin_get("/ready")
                    if status == 200 and "LIVE" in body:
                        self.listen_ports = self._listener_ports()
                        if self.listen_ports and all(self.listen_ports.values()):
                            return
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
            time.sleep(0.05)
        raise EnvoyError(f"Envoy {self.name} not ready after {timeout}s\n{self.log_tail()}")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise EnvoyError(f"Envoy {self.name} exited with {self.proc.returncode}\n{self.log_tail()}")

    def _listener_ports(self) -> dict[str, int]:
        _, body = self.admin_get("/listeners?format=json")
        ports = {}
        for status in json.loads(body).get("listener_statuses", []):
            ports[status["name"]] = int(status["local_address"]["socket_address"].get("port_value", 0))
        return ports

    def stop(self, *, timeout: float = 10) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- queries --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def listen_port(self) -> int:
        """Port of the (first) listener."""
        if not self.listen_ports:
            raise EnvoyError(f"Envoy {self.name} has no listener")
        return next(iter(self.listen_ports.values()))

    def ready(self) -> bool:
        """The process runs and the admin API answers /ready with LIVE."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            status, body = self.admin_get("/ready")
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
        return status == 200 and "LIVE" in body

    @property
    def listen_url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def admin_get(self, path: str, *, timeout: float = 5) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Counters and gauges whose name starts with `prefix`."""
        _, body = self.admin_get("/stats?format=json")
        out = {}
        for s in json.loads(body).get("stats", []):
            if "name" in s and s["name"].startswith(prefix) and isinstance(s.get("value"), int):
                out[s["name"]] = s["value"]
        return out

    def wait_ecds_reloads(self, n: int, *, timeout: float = 20) -> None:
        """Wait until ECDS has applied `n` filter configurations (the sum of
        every discovered filter's `config_reload`; the tests run one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = sum(v for k, v in self.stats("extension_config_discovery.").items()
                      if k.endswith("config_reload"))
            if got >= n:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"Envoy did not apply ECDS update #{n}: {self.stats('extension_config_discovery.')}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text().splitlines()
        return f"--- last {min(lines, len(text))} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])
