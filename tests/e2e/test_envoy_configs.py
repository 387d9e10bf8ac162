"""Every Envoy config shipped in envoy/ is a valid Envoy 1.40 config once its
placeholders are filled with real values: the built pinhole.wasm and a
policy blob compiled by `pinhole compile` (`envoy --mode validate` loads the
wasm module too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ecds
import envoyctl
import pg

SHIPPED = sorted((envoyctl.ROOT / "envoy").glob("*.yaml"))
DOCUMENTED_PLACEHOLDERS = {"ADMIN_PORT", "LISTEN_PORT", "UPSTREAM_PORT", "WASM", "PLUGIN_CONFIG", "PASSWORD_ENV",
                           "ECDS_PATH"}

# The policy target each shipped config protects in the test policy.
TARGET_FOR = {"http": "api"}
# Postgres listeners: the Postgres test policy (pg.policy_yaml), its target,
# and the network filter's `listener` key.
POSTGRES = {"postgres"}
WITH_FILTER = [p for p in SHIPPED if "{{WASM}}" in p.read_text()]


def _plugin_config(template: Path, blob: bytes, pg_blob: bytes) -> str:
    if template.stem in POSTGRES:
        return envoyctl.plugin_config(pg.TARGET, pg_blob, listener="postgres")
    return envoyctl.plugin_config(TARGET_FOR.get(template.stem, "tools"), blob)


def test_configs_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    for name in ("mcp.yaml", "http.yaml", "postgres.yaml", "postgres-tcp.yaml"):
        assert name in names, f"envoy/{name} missing; found {sorted(names)}"


@pytest.mark.parametrize("template", SHIPPED, ids=[p.name for p in SHIPPED])
def test_placeholders_are_the_documented_ones(template: Path) -> None:
    text = template.read_text()
    used = set(re.findall(r"\{\{([A-Z_]+)\}\}", text))
    assert used <= DOCUMENTED_PLACEHOLDERS, f"undocumented placeholders {used - DOCUMENTED_PLACEHOLDERS}"
    header = text.split("\n\n", 1)[0] if text.startswith("#") else ""
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for name in used:
        assert f"{{{{{name}}}}}" in comments, f"{template.name}: placeholder {{{{{name}}}}} is not explained in a comment"
    assert header, f"{template.name} should start with a comment block explaining it"


@pytest.mark.parametrize("template", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_validates(template: Path, artifacts, blob: bytes, pg_blob: bytes, workdir: Path) -> None:
    ecds_path = workdir / f"validate-{template.stem}.ecds.json"
    ecds.write(ecds_path, "1", ecds.typed_extension_config(
        wasm=artifacts.wasm, plugin_config=envoyctl.plugin_config(pg.TARGET, pg_blob, listener="postgres"),
        vm_id="pinhole-postgres", env_keys=[pg.PASSWORD_ENV]))
    rendered = envoyctl.render(
        template,
        workdir / f"validate-{template.stem}.yaml",
        WASM=artifacts.wasm,
        UPSTREAM_PORT=9,  # never connected to in validate mode
        PLUGIN_CONFIG=_plugin_config(template, blob, pg_blob),
        PASSWORD_ENV=pg.PASSWORD_ENV,
        ECDS_PATH=ecds_path,
    )
    assert "{{" not in rendered.read_text()
    proc = envoyctl.validate(rendered)
    assert "OK" in proc.stdout + proc.stderr


@pytest.mark.parametrize("template", WITH_FILTER, ids=[p.name for p in WITH_FILTER])
def test_validate_rejects_a_missing_wasm(template: Path, blob: bytes, workdir: Path) -> None:
    """The validation step really checks the filter: a config naming a wasm
    file that does not exist is refused."""
    rendered = envoyctl.render(
        template,
        workdir / f"validate-missing-{template.stem}.yaml",
        WASM=workdir / "does-not-exist.wasm",
        UPSTREAM_PORT=9,
        PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob),
        PASSWORD_ENV=pg.PASSWORD_ENV,
    )
    with pytest.raises(AssertionError, match="validate"):
        envoyctl.validate(rendered)


def test_postgres_configs_differ_only_by_the_filter() -> None:
    """The benchmark baseline (postgres-tcp.yaml) is postgres.yaml without
    pinhole: same listener, buffer limit, tcp_proxy and cluster."""
    def shape(path: Path) -> list[str]:
        keep = ("per_connection_buffer_limit_bytes", "stat_prefix", "cluster:", "idle_timeout", "connect_timeout",
                "envoy.filters.network.tcp_proxy", "port_value")
        return [line.strip() for line in path.read_text().splitlines()
                if not line.lstrip().startswith("#") and any(k in line for k in keep)]
    root = envoyctl.ROOT / "envoy"
    assert shape(root / "postgres.yaml") == shape(root / "postgres-tcp.yaml")


def test_postgres_config_fails_closed_and_has_its_own_vm() -> None:
    text = (envoyctl.ROOT / "envoy" / "postgres.yaml").read_text()
    assert "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm" in text
    assert "failure_policy: FAIL_CLOSED" in text
    assert "vm_id: pinhole-postgres" in text
    assert 'host_env_keys: ["{{PASSWORD_ENV}}"]' in text
    # pinhole runs before tcp_proxy
    assert text.index("name: pinhole") < text.index("name: envoy.filters.network.tcp_proxy")
