"""Envoy's configuration for a fixed set of inputs equals a snapshot of it, as data.

The snapshot (tests/unit/envoy_config_snapshot.yaml) was first taken from the string template that
rendered the configuration before it was built as data (envoy/envoy.yaml.template, rendered by
localstack/envoy.py): each case below rendered and parsed as YAML (anchors resolved, comments gone),
stored as YAML again (sorted keys; a subtree that occurs more than once, such as the local replies
that every listener shares, is written once with an anchor). The builder must produce the same data: dict equality, so key order, comments, quoting
and anchors do not matter, every value does. Between them the cases cover both cluster types, both
access logs, the default and given document paths, and the TLS listener without a client CA, with an
optional and with a required client certificate.

Two things are normalised so that the snapshot does not change with the machine or with every edit of
the Lua guard: the repository's path reads ``$ROOT``, and the HTTP guard's Lua source, once checked to
be its two constants followed by envoy/http_guard.lua, reads ``$HTTP_GUARD_LUA``.

A deliberate change of the configuration changes the snapshot too: rewrite it with
``python -m tests.unit.test_envoy_config_snapshot --write`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.config import MAX_REQUEST_HEADER_BYTES
from envoy_config.bootstrap import render_envoy_config
from envoy_config.example import EXAMPLE_SETTINGS
from envoy_config.limits import MAX_REQUEST_BODY_BYTES

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_PATH = Path(__file__).resolve().parent / "envoy_config_snapshot.yaml"
HTTP_GUARD_LUA = ROOT / "envoy" / "http_guard.lua"

CASES: dict[str, dict[str, Any]] = {
    # The committed example's settings: relative paths, two IP upstreams, optional client certificates.
    "example": dict(EXAMPLE_SETTINGS),
    # Only what must be given: a DNS upstream (STRICT_DNS), stdout access log, the default document
    # paths (openapi.json beside the descriptor set, envoy/docs.html, web/dist), no TLS listener.
    "defaults_dns_upstream": {
        "listen_host": "127.0.0.1",
        "listen_port": 18080,
        "admin_port": 19901,
        "upstreams": [("localhost", 50061)],
        "descriptor_path": ROOT / "generated" / "emoney.binpb",
        "allowed_origins": ["http://localhost:3000"],
    },
    # Everything given, as start_envoy gives it (absolute paths, a log file), and mutual TLS.
    "file_log_mutual_tls": {
        "listen_host": "0.0.0.0",
        "listen_port": 28080,
        "admin_port": 29901,
        "upstreams": [("127.0.0.1", 50071), ("10.0.0.2", 50072), ("10.0.0.3", 50073)],
        "descriptor_path": ROOT / "generated" / "emoney.binpb",
        "allowed_origins": ["https://backoffice.example", "http://localhost:3000"],
        "access_log_path": Path("/var/log/emoney/envoy-access.log"),
        "upstream_source_address": "127.0.0.9",
        "openapi_path": Path("/srv/emoney/openapi.json"),
        "docs_page_path": Path("/srv/emoney/docs.html"),
        "web_dist_path": Path("/srv/emoney/web"),
        "tls_port": 28443,
        "tls_cert_path": Path("/etc/emoney/pki/server.crt"),
        "tls_key_path": Path("/etc/emoney/pki/server.key"),
        "tls_ca_path": Path("/etc/emoney/pki/ca.crt"),
        "require_client_certificate": True,
    },
    # TLS without a client CA: client certificates are not asked for.
    "tls_without_client_ca": {
        "listen_host": "127.0.0.1",
        "listen_port": 38080,
        "admin_port": 39901,
        "upstreams": [("127.0.0.1", 50081)],
        "descriptor_path": Path("generated/emoney.binpb"),
        "allowed_origins": ["http://localhost:3000"],
        "access_log_path": Path("/tmp/envoy-access.log"),
        "tls_port": 38443,
        "tls_cert_path": Path("/etc/emoney/pki/server.crt"),
        "tls_key_path": Path("/etc/emoney/pki/server.key"),
    },
}


def _expected_lua() -> str:
    return (
        f"local MAX_REQUEST_BODY_BYTES = {MAX_REQUEST_BODY_BYTES}\n"
        f"local MAX_REQUEST_HEADER_BYTES = {MAX_REQUEST_HEADER_BYTES}\n"
        + HTTP_GUARD_LUA.read_text(encoding="utf-8")
    )


def _normalised(value: Any, lua: str) -> Any:
    if isinstance(value, dict):
        return {key: _normalised(item, lua) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item, lua) for item in value]
    if isinstance(value, str):
        return "$HTTP_GUARD_LUA" if value == lua else value.replace(str(ROOT), "$ROOT")
    return value


def rendered_as_data(case: str) -> Any:
    """The case rendered, parsed as YAML and normalised (see the module's docstring)."""
    text = render_envoy_config(**CASES[case])
    return _normalised(yaml.safe_load(text), _expected_lua())


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    return yaml.safe_load(SNAPSHOT_PATH.read_text(encoding="utf-8"))


def test_the_snapshot_has_every_case(snapshot):
    assert sorted(snapshot) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_configuration_equals_the_snapshot(snapshot, case):
    assert rendered_as_data(case) == snapshot[case]


def test_the_lua_guard_is_in_the_snapshot_once_per_listener(snapshot):
    """The normalisation found the Lua source: it is the guard's constants and file, nothing else."""
    text = json.dumps(snapshot)
    assert text.count('"$HTTP_GUARD_LUA"') == 1 + 2 * 3  # one case without the TLS listener, three with it


def _shared(value: Any, seen: dict[str, Any]) -> Any:
    """Equal subtrees of some size as one object, which YAML writes once (an anchor) and then refers to."""
    if isinstance(value, dict):
        value = {key: _shared(item, seen) for key, item in value.items()}
    elif isinstance(value, list):
        value = [_shared(item, seen) for item in value]
    else:
        return value
    key = json.dumps(value, sort_keys=True)
    return seen.setdefault(key, value) if len(key) >= 300 else value


def write_snapshot() -> None:
    data = _shared({case: rendered_as_data(case) for case in sorted(CASES)}, {})
    text = yaml.safe_dump(data, sort_keys=True, width=float("inf"), default_flow_style=False)
    header = "# Envoy's configuration per case of tests/unit/test_envoy_config_snapshot.py, as data. Do not edit.\n"
    SNAPSHOT_PATH.write_text(header + text, encoding="utf-8")
    print(f"wrote {SNAPSHOT_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.unit.test_envoy_config_snapshot --write")
    write_snapshot()
