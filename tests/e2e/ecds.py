"""Write the ECDS file Envoy watches (envoy/postgres-ecds.yaml): a
DiscoveryResponse with one TypedExtensionConfig named "pinhole", replaced
atomically (write a temporary file, then rename), the way `pinhole push`
does it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

NETWORK_WASM = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
HTTP_WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def typed_extension_config(*, wasm: str | Path, plugin_config: str, vm_id: str, env_keys: list[str],
                           network: bool = True, name: str = "pinhole") -> dict[str, Any]:
    vm: dict[str, Any] = {
        "vm_id": vm_id,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(Path(wasm).resolve())}},
    }
    if env_keys:
        vm["environment_variables"] = {"host_env_keys": env_keys}
    return {
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": name,
        "typed_config": {
            "@type": NETWORK_WASM if network else HTTP_WASM,
            "config": {
                "name": name,
                "root_id": name,
                "failure_policy": "FAIL_CLOSED",
                "vm_config": vm,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config,
                },
            },
        },
    }


def write(path: Path, version: str, config: dict[str, Any]) -> None:
    """Atomically replace `path` with a DiscoveryResponse holding `config`."""
    body = {"version_info": version, "resources": [config]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, path)
