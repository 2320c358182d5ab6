"""The committed example, ``envoy/envoy.local.yaml``: the configuration for the default local addresses.

Kept for people who run Envoy by hand (from the repository root, since the descriptor path in it is
relative). Rewrite it with ``python -m envoy_config --write-example``; a test fails when it is stale
(for example after a new service was added).

The example shows the TLS listener as `make run` starts it by default: port 8443, certificates from
``.local/pki/`` (written by the first `make run`, see localstack/certificates.py), client certificates
requested and checked but not required. Until that folder exists, Envoy refuses the example for the
missing files; ``localstack.envoy.validate_example`` checks it with throw-away certificates instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy_config.bootstrap import render_envoy_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PATH = ROOT / "envoy" / "envoy.local.yaml"

# Settings the committed example is rendered with: the local stack's default
# ports (localstack/stack.py: Envoy 8080, admin 9901, two servers from 50051).
EXAMPLE_SETTINGS: dict[str, Any] = {
    "listen_host": "127.0.0.1",
    "listen_port": 8080,
    "admin_port": 9901,
    "upstreams": [("127.0.0.1", 50051), ("127.0.0.1", 50052)],
    "descriptor_path": Path("generated/emoney.binpb"),
    "openapi_path": Path("generated/openapi.json"),
    "docs_page_path": Path("envoy/docs.html"),
    "web_dist_path": Path("web/dist"),
    "allowed_origins": ["http://127.0.0.1:8080", "http://localhost:8080"],
    "access_log_path": None,
    # The terminals' TLS listener as `make run` starts it (EMONEY_TERMINAL_MTLS=false).
    "tls_port": 8443,
    "tls_cert_path": Path(".local/pki/server.crt"),
    "tls_key_path": Path(".local/pki/server.key"),
    "tls_ca_path": Path(".local/pki/ca.crt"),
    "require_client_certificate": False,
}


def render_example() -> str:
    """The example's text. Run from the repository root: the relative descriptor path is read."""
    return render_envoy_config(**EXAMPLE_SETTINGS)
