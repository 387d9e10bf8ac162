"""Every Envoy config shipped in envoy/ is a valid Envoy 1.40 config once its
placeholders are filled with real values: the built pinhole.wasm and a
policy blob compiled by `pinhole compile` (`envoy --mode validate` loads the
wasm module too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import envoyctl

SHIPPED = sorted((envoyctl.ROOT / "envoy").glob("*.yaml"))
DOCUMENTED_PLACEHOLDERS = {"ADMIN_PORT", "LISTEN_PORT", "UPSTREAM_PORT", "WASM", "PLUGIN_CONFIG"}

# The policy target each shipped config protects in the test policy.
TARGET_FOR = {"http": "api"}


def test_configs_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    assert "mcp.yaml" in names, f"envoy/mcp.yaml missing; found {sorted(names)}"


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
def test_shipped_config_validates(template: Path, artifacts, blob: bytes, workdir: Path) -> None:
    rendered = envoyctl.render(
        template,
        workdir / f"validate-{template.stem}.yaml",
        WASM=artifacts.wasm,
        UPSTREAM_PORT=9,  # never connected to in validate mode
        PLUGIN_CONFIG=envoyctl.plugin_config(TARGET_FOR.get(template.stem, "tools"), blob),
    )
    assert "{{" not in rendered.read_text()
    proc = envoyctl.validate(rendered)
    assert "OK" in proc.stdout + proc.stderr


@pytest.mark.parametrize("template", SHIPPED, ids=[p.name for p in SHIPPED])
def test_validate_rejects_a_missing_wasm(template: Path, blob: bytes, workdir: Path) -> None:
    """The validation step really checks the filter: a config naming a wasm
    file that does not exist is refused."""
    rendered = envoyctl.render(
        template,
        workdir / f"validate-missing-{template.stem}.yaml",
        WASM=workdir / "does-not-exist.wasm",
        UPSTREAM_PORT=9,
        PLUGIN_CONFIG=envoyctl.plugin_config("tools", blob),
    )
    with pytest.raises(AssertionError, match="validate"):
        envoyctl.validate(rendered)
