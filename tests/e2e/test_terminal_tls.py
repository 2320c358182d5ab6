"""The terminals' TLS listener: a real Envoy of this module's own (TLS with client certificates optional, then mutual
TLS) in front of the session stack's real servers, certificates from localstack/certificates.py, the SDK, the CLI and
grpcurl as clients."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from emoney.platform.v1 import platform_pb2, platform_pb2_grpc
from localstack.certificates import LocalPki, ensure_local_pki
from localstack.envoy import EnvoyService, start_envoy
from localstack.processes import free_ports
from terminal_sdk import TerminalClient, TerminalError, tls_credentials
from tests.fixtures.identity import DEMO_TENANT, admin_stub, bearer, login, login_as, unique_email
from tests.fixtures.ledger import accounts_stub, balance, new_customer, payment_code
from tests.fixtures.tools import grpcurl_binary

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "generated" / "emoney.binpb"


@dataclass
class Terminal:
    """A registered terminal's device credentials and the merchant account it pays into."""

    name: str  # terminals/{id}
    client_id: str
    client_secret: str
    account: str


@pytest.fixture
def channel(stack):
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> LocalPki:
    return ensure_local_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> LocalPki:
    """Another CA with its own server and client certificates: trusted by nobody here."""
    return ensure_local_pki(tmp_path_factory.mktemp("other-pki"))


def _start(stack, directory: Path, pki: LocalPki, *, require_client_certificate: bool) -> EnvoyService:
    listen_port, admin_port, tls_port = free_ports(3)
    return start_envoy(
        config_dir=directory,
        log_dir=directory,
        listen_port=listen_port,
        admin_port=admin_port,
        upstreams=[(address.rsplit(":", 1)[0], int(address.rsplit(":", 1)[1])) for address in stack.endpoints.grpc_servers],
        descriptor_path=DESCRIPTOR,
        allowed_origins=[f"http://127.0.0.1:{listen_port}"],
        tls_port=tls_port,
        tls_cert_path=pki.server_cert_path,
        tls_key_path=pki.server_key_path,
        tls_ca_path=pki.ca_cert_path,
        require_client_certificate=require_client_certificate,
    )


@pytest.fixture(scope="module")
def tls_envoy(stack, pki, tmp_path_factory):
    """TLS as `make run` starts it: client certificates asked for and checked, not required."""
    service = _start(stack, tmp_path_factory.mktemp("envoy-tls"), pki, require_client_certificate=False)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def mtls_envoy(stack, pki, tmp_path_factory):
    """Mutual TLS (EMONEY_TERMINAL_MTLS=true): no valid client certificate, no connection."""
    service = _start(stack, tmp_path_factory.mktemp("envoy-mtls"), pki, require_client_certificate=True)
    try:
        yield service
    finally:
        service.stop()


def new_terminal(stack, channel: grpc.Channel) -> Terminal:
    """A merchant with a EUR account and a terminal registered by the operator (as new_shop does), credentials kept."""
    operator = login_as(stack, "operator")
    admin = admin_stub(channel)
    merchant = admin.CreateUser(
        admin_pb2.CreateUserRequest(email=unique_email("tls-till"), display_name="TLS Shop", roles=[auth_pb2.ROLE_MERCHANT]),
        metadata=bearer(operator), timeout=10,
    )
    token = login(stack.endpoints.envoy, DEMO_TENANT, merchant.user.email, merchant.initial_password).tokens.access_token
    account = accounts_stub(channel).CreateAccount(
        accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_MERCHANT, currency="EUR"), metadata=bearer(token), timeout=10
    ).account
    registered = admin.RegisterTerminal(
        admin_pb2.RegisterTerminalRequest(merchant=merchant.user.name, display_name="TLS till"), metadata=bearer(operator), timeout=10
    )
    return Terminal(registered.terminal.name, registered.terminal.client_id, registered.client_secret, account.name)


def _server_info(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status of one unauthenticated call (GetServerInfo) over a fresh channel: OK, or why it failed."""
    opened = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with opened as channel:
        try:
            platform_pb2_grpc.PlatformServiceStub(channel).GetServerInfo(platform_pb2.GetServerInfoRequest(), timeout=5)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _refused_login(target: str, **tls) -> TerminalError:
    """Log a terminal in once (no retries) over TLS and return the error it must fail with."""
    with TerminalClient.with_tls(target, "term_unknown", "not-a-secret", max_attempts=1, **tls) as client:
        with pytest.raises(TerminalError) as refused:
            client.login()
    return refused.value


def _ssl_stats(envoy: EnvoyService) -> dict[str, int]:
    """The TLS listener's ssl.* counters from Envoy's admin interface, by short name (e.g. `connection_error`)."""
    port = envoy.tls_address.rsplit(":", 1)[1]
    prefix = f"listener.127.0.0.1_{port}.ssl."
    text = requests.get(f"http://{envoy.admin_address}/stats", params={"filter": f"^{prefix}"}, timeout=5).text
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(prefix) and value.strip().isdigit():
            stats[name[len(prefix):]] = int(value)
    return stats


def _counter_grew(envoy: EnvoyService, before: dict[str, int], name: str) -> bool:
    """Envoy counts a refused handshake a moment after the client gave up: wait briefly for it."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if _ssl_stats(envoy).get(name, 0) > before.get(name, 0):
            return True
        time.sleep(0.05)
    return False


# --- TLS, client certificates optional (the `make run` default) -----------------------------


def test_terminal_charges_a_payment_code_over_tls(stack, channel, tls_envoy, pki):
    """The SDK, trusting the local CA and presenting no certificate, logs in and charges a payment code over TLS."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_terminal(stack, channel)
    with TerminalClient.with_tls(tls_envoy.tls_address, till.client_id, till.client_secret, ca_path=pki.ca_cert_path) as client:
        assert client.terminal.name == till.name
        payment = client.charge(payment_code(channel, ana, 2_000), 1_250, "EUR")
        assert client.get_payment(payment.name).amount_minor == 1_250
    assert (payment.kind, payment.status, payment.to_account, payment.terminal) == (
        payments_pb2.PAYMENT_KIND_PAYMENT, payments_pb2.PAYMENT_STATUS_COMPLETED, till.account, till.name
    )
    assert balance(channel, ana.token, ana.account).balance_minor == 3_750


def test_handshake_prefers_tls13_offers_only_h2_and_accepts_tls12(tls_envoy, pki):
    """A TLS client gets TLS 1.3 and ALPN h2 (also when it offers http/1.1 first); one capped at TLS 1.2 still connects."""
    host, port = tls_envoy.tls_address.rsplit(":", 1)

    def handshake(maximum: ssl.TLSVersion) -> tuple[str, str, str]:
        context = ssl.create_default_context(cafile=str(pki.ca_cert_path))
        context.maximum_version = maximum
        context.set_alpn_protocols(["http/1.1", "h2"])
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.version(), tls.selected_alpn_protocol(), tls.cipher()[0]

    assert handshake(ssl.TLSVersion.TLSv1_3)[:2] == ("TLSv1.3", "h2")
    version, protocol, cipher = handshake(ssl.TLSVersion.TLSv1_2)
    assert (version, protocol) == ("TLSv1.2", "h2") and cipher.startswith("ECDHE-ECDSA-") and "GCM" in cipher


def test_plaintext_client_is_refused_on_the_tls_port_but_served_on_the_cleartext_one(tls_envoy):
    """Cleartext gRPC to the TLS port fails UNAVAILABLE; the same Envoy's cleartext listener is unchanged and answers."""
    assert _server_info(tls_envoy.tls_address, None) == grpc.StatusCode.UNAVAILABLE
    assert _server_info(tls_envoy.address, None) == grpc.StatusCode.OK


def test_http1_over_tls_is_refused(tls_envoy, pki):
    """The TLS listener speaks HTTP/2 only: an HTTP/1.1 request over TLS (requests) gets no answer."""
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://{tls_envoy.tls_address}/v1/serverInfo", verify=str(pki.ca_cert_path), timeout=5)


@pytest.mark.parametrize("mismatch", ["another CA", "another name"])
def test_client_verifies_the_server_certificate(tls_envoy, pki, other_pki, mismatch):
    """A client that trusts a different CA, or expects a name the certificate lacks, refuses the server: UNAVAILABLE."""
    if mismatch == "another CA":
        error = _refused_login(tls_envoy.tls_address, ca_path=other_pki.ca_cert_path)
    else:
        error = _refused_login(tls_envoy.tls_address, ca_path=pki.ca_cert_path, server_name="payments.example")
    assert error.code == grpc.StatusCode.UNAVAILABLE


def test_optional_client_certificate_is_checked_when_presented(tls_envoy, pki, other_pki):
    """With mTLS off the local client certificate is accepted, but one from another CA is still refused."""
    local = tls_credentials(pki.ca_cert_path, pki.client_cert_path, pki.client_key_path)
    assert _server_info(tls_envoy.tls_address, local) == grpc.StatusCode.OK
    before = _ssl_stats(tls_envoy)
    foreign = tls_credentials(pki.ca_cert_path, other_pki.client_cert_path, other_pki.client_key_path)
    assert _server_info(tls_envoy.tls_address, foreign) == grpc.StatusCode.UNAVAILABLE
    assert _counter_grew(tls_envoy, before, "fail_verify_error")


def test_tls_listener_shares_the_cleartext_listeners_filters_and_routes(tls_envoy):
    """In Envoy's loaded configuration the two listeners' HTTP connection managers differ only in stat prefix and codec."""
    dump = requests.get(f"http://{tls_envoy.admin_address}/config_dump", params={"resource": "static_listeners"}, timeout=5).json()
    managers = {
        entry["listener"]["name"]: entry["listener"]["filter_chains"][0]["filters"][0]["typed_config"] for entry in dump["configs"]
    }
    cleartext, tls = dict(managers["emoney_api"]), dict(managers["emoney_api_tls"])
    assert (cleartext.pop("stat_prefix"), tls.pop("stat_prefix")) == ("emoney_api", "emoney_api_tls")
    assert (cleartext.pop("codec_type", "AUTO"), tls.pop("codec_type")) == ("AUTO", "HTTP2")
    assert tls == cleartext
    assert [f["name"] for f in tls["http_filters"]][:4] == [
        "envoy.filters.http.cors", "emoney.http_guard", "envoy.filters.http.grpc_web", "envoy.filters.http.grpc_json_transcoder",
    ]


# --- mutual TLS -----------------------------------------------------------------------------


def test_mtls_terminal_with_the_local_client_certificate_charges(stack, channel, mtls_envoy, pki):
    """With mTLS on, a terminal presenting the local client certificate logs in and charges; the access log names it."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_terminal(stack, channel)
    with TerminalClient.with_tls(
        mtls_envoy.tls_address, till.client_id, till.client_secret,
        ca_path=pki.ca_cert_path, client_cert_path=pki.client_cert_path, client_key_path=pki.client_key_path,
    ) as client:
        payment = client.charge(payment_code(channel, ana, 1_000), 1_000, "EUR")
    assert (payment.status, payment.terminal) == (payments_pb2.PAYMENT_STATUS_COMPLETED, till.name)
    assert balance(channel, ana.token, ana.account).balance_minor == 4_000

    log_path = mtls_envoy.config_path.parent / "envoy-access.log"
    deadline, entries = time.monotonic() + 5, []
    while time.monotonic() < deadline and not entries:  # Envoy flushes its access log about once a second
        time.sleep(0.2)
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        entries = [entry for entry in map(json.loads, lines) if entry["path"].endswith("/ChargePaymentCode")]
    assert entries and entries[-1]["tls_version"] == "TLSv1.3"
    assert "CN=demo-terminal" in entries[-1]["client_certificate"]


def test_mtls_refuses_a_terminal_without_a_client_certificate(mtls_envoy, pki):
    """With mTLS on, a terminal that trusts the server but presents no certificate is refused in the handshake: UNAVAILABLE, fail_verify_no_cert."""
    before = _ssl_stats(mtls_envoy)
    error = _refused_login(mtls_envoy.tls_address, ca_path=pki.ca_cert_path)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert _counter_grew(mtls_envoy, before, "fail_verify_no_cert")
    assert _ssl_stats(mtls_envoy).get("handshake", 0) == before.get("handshake", 0)  # no handshake completed


def test_mtls_refuses_a_client_certificate_from_another_ca(mtls_envoy, pki, other_pki):
    """With mTLS on, a certificate signed by another CA (same names, other key) is refused: UNAVAILABLE, fail_verify_error."""
    before = _ssl_stats(mtls_envoy)
    error = _refused_login(
        mtls_envoy.tls_address, ca_path=pki.ca_cert_path,
        client_cert_path=other_pki.client_cert_path, client_key_path=other_pki.client_key_path,
    )
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert _counter_grew(mtls_envoy, before, "fail_verify_error")


def test_grpcurl_lists_services_over_mutual_tls(mtls_envoy, pki):
    """grpcurl with -cacert/-cert/-key lists the services on the mTLS listener; without -cert/-key it is refused."""
    # grpcurl keeps dialling a refused handshake until -connect-timeout.
    common = [grpcurl_binary(), "-connect-timeout", "2", "-max-time", "10", "-cacert", str(pki.ca_cert_path)]
    listed = subprocess.run(
        [*common, "-cert", str(pki.client_cert_path), "-key", str(pki.client_key_path), mtls_envoy.tls_address, "list"],
        capture_output=True, text=True, timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    assert "emoney.payments.v1.PaymentsService" in listed.stdout.split()
    refused = subprocess.run([*common, mtls_envoy.tls_address, "list"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "emoney." not in refused.stdout and "Failed to dial" in refused.stderr


def _cli(args: list[str], secret: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EMONEY_TERMINAL_")}
    env["EMONEY_TERMINAL_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "terminal_sdk", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=30,
    )


def test_cli_charges_over_mutual_tls(stack, channel, mtls_envoy, pki):
    """`python -m terminal_sdk --ca --client-cert --client-key ... charge` pays over mTLS; without the certificate it exits 1."""
    ana, till = new_customer(stack, channel, funded_minor=5_000), new_terminal(stack, channel)
    code = payment_code(channel, ana, 1_250)
    common = ["--target", mtls_envoy.tls_address, "--client-id", till.client_id, "--ca", str(pki.ca_cert_path), "--max-attempts", "1"]
    charge = ["charge", "--code", code, "--amount-minor", "1250", "--currency", "EUR"]
    refused = _cli([*common, *charge], till.client_secret)
    assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
    done = _cli([*common, "--client-cert", str(pki.client_cert_path), "--client-key", str(pki.client_key_path), *charge], till.client_secret)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["terminal"] == till.name
    assert balance(channel, ana.token, ana.account).balance_minor == 3_750


@pytest.mark.parametrize("problem", ["certificate without key", "unreadable CA file"])
def test_cli_tls_usage_errors_exit_2(pki, tmp_path, problem):
    """Half a client key pair, or a CA file that cannot be read, is a usage error (exit 2) before anything is sent."""
    if problem == "certificate without key":
        options, expected = ["--ca", str(pki.ca_cert_path), "--client-cert", str(pki.client_cert_path)], "--client-key"
    else:
        options, expected = ["--ca", str(tmp_path / "missing-ca.crt")], "missing-ca.crt"
    result = _cli(["--target", "127.0.0.1:1", "--client-id", "term_x", *options, "get", "--payment", "payments/x"], "secret")
    assert result.returncode == 2 and expected in result.stderr
