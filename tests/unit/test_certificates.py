"""The local PKI for the terminals' TLS listener (localstack/certificates.py): what is in each certificate, and
when the files on disk are kept, renewed or replaced."""

from __future__ import annotations

import ipaddress
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localstack import certificates
from localstack.certificates import (
    create_ca,
    ensure_local_pki,
    is_signed_by,
    issue_client_certificate,
    issue_server_certificate,
    load_certificate,
    needs_renewal,
)

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ca():
    return create_ca(now=NOW)


def _extension(certificate: x509.Certificate, kind):
    return certificate.extensions.get_extension_for_class(kind)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _all_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_ca_is_a_p256_ca_that_signs_only_end_entity_certificates(ca):
    """The CA is self-signed on P-256, CA:TRUE with path length 0, key usage keyCertSign + cRLSign, 10 years."""
    certificate, key = ca
    assert isinstance(key.curve, ec.SECP256R1) and certificate.public_key() == key.public_key()
    constraints = _extension(certificate, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = _extension(certificate, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    assert is_signed_by(certificate, certificate)
    assert certificate.not_valid_after_utc - NOW == timedelta(days=certificates.CA_VALID_DAYS)


def test_server_certificate_names_loopback_and_localhost_for_server_auth(ca):
    """The server certificate has exactly the SANs IP 127.0.0.1 and DNS localhost, serverAuth, digitalSignature only."""
    server, key = issue_server_certificate(*ca, now=NOW)
    names = _extension(server, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert _extension(server, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    usage = _extension(server, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.key_encipherment or usage.value.crl_sign)
    assert not _extension(server, x509.BasicConstraints).value.ca
    assert isinstance(key.curve, ec.SECP256R1) and server.public_key() == key.public_key()


def test_client_certificate_is_for_client_auth_with_the_terminal_name(ca):
    """The demo terminal's certificate has CN demo-terminal, URI SAN urn:emoney:terminal:demo-terminal, clientAuth only."""
    client, _ = issue_client_certificate(*ca, now=NOW)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "demo-terminal"
    assert certificates.subject_alternative_names(client) == {"urn:emoney:terminal:demo-terminal"}
    assert _extension(client, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert not _extension(client, x509.BasicConstraints).value.ca


def test_leaf_certificates_verify_against_the_ca_like_a_tls_peer_would(ca):
    """cryptography's X.509 path validation (RFC 5280 + web PKI rules) accepts both leaves with the CA as the only root."""
    ca_certificate, _ = ca
    store = verification.Store([ca_certificate])
    server, _ = issue_server_certificate(*ca, now=NOW)
    client, _ = issue_client_certificate(*ca, now=NOW)
    at = NOW + timedelta(days=1)
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier = verification.PolicyBuilder().store(store).time(at).build_server_verifier(name)
        assert verifier.verify(server, [])[-1] == ca_certificate
    client_verifier = verification.PolicyBuilder().store(store).time(at).build_client_verifier()
    assert client_verifier.verify(client, []).chain[-1] == ca_certificate
    with pytest.raises(verification.VerificationError):
        verification.PolicyBuilder().store(store).time(at).build_server_verifier(x509.DNSName("example.com")).verify(server, [])


def test_signature_check_rejects_a_certificate_from_another_ca(ca):
    """is_signed_by is true for the issuing CA only, even when another CA has the same name."""
    server, _ = issue_server_certificate(*ca, now=NOW)
    other_ca, _ = create_ca(now=NOW)  # same subject name, different key
    assert is_signed_by(server, ca[0])
    assert not is_signed_by(server, other_ca)


def test_validity_is_a_year_from_slightly_in_the_past_and_never_beyond_the_ca(ca):
    """Leaves are valid from 5 minutes ago for 365 days, but never longer than the CA that signed them."""
    server, _ = issue_server_certificate(*ca, now=NOW)
    assert server.not_valid_before_utc == NOW - certificates.CLOCK_SKEW
    assert server.not_valid_after_utc == NOW + timedelta(days=certificates.LEAF_VALID_DAYS)
    short_ca = create_ca(now=NOW, valid_days=10)
    client, _ = issue_client_certificate(*short_ca, now=NOW)
    assert client.not_valid_after_utc == short_ca[0].not_valid_after_utc


def test_needs_renewal_within_thirty_days_of_expiry(ca):
    """A certificate is renewed from 30 days before it expires, and when it is not valid yet."""
    server, _ = issue_server_certificate(*ca, now=NOW)
    expiry = server.not_valid_after_utc
    assert not needs_renewal(server, now=expiry - timedelta(days=31))
    assert needs_renewal(server, now=expiry - timedelta(days=30))
    assert needs_renewal(server, now=expiry + timedelta(days=1))
    assert needs_renewal(server, now=NOW - timedelta(hours=1))


def test_ensure_local_pki_writes_keys_0600_in_a_0700_folder(tmp_path):
    """Every private key is mode 0600, certificates 0644, the folder 0700; the paths returned exist."""
    folder = tmp_path / "pki"
    pki = ensure_local_pki(folder, now=NOW)
    assert _mode(folder) == 0o700
    for key_path in (pki.server_key_path, pki.client_key_path, folder / certificates.CA_KEY_NAME):
        assert _mode(key_path) == 0o600, key_path
    for cert_path in (pki.ca_cert_path, pki.server_cert_path, pki.client_cert_path):
        assert _mode(cert_path) == 0o644, cert_path
    assert not [path.name for path in folder.iterdir() if path.name.startswith(".")]  # no temporary files left
    ca_certificate = load_certificate(pki.ca_cert_path)
    assert is_signed_by(load_certificate(pki.server_cert_path), ca_certificate)
    assert is_signed_by(load_certificate(pki.client_cert_path), ca_certificate)


def test_ensure_local_pki_keeps_good_files(tmp_path):
    """A second call (a restart) leaves every file as it was, byte for byte, and tightens a loosened key mode."""
    folder = tmp_path / "pki"
    pki = ensure_local_pki(folder, now=NOW)
    before = _all_files(folder)
    pki.client_key_path.chmod(0o644)
    ensure_local_pki(folder, now=NOW + timedelta(days=100))
    assert _all_files(folder) == before
    assert _mode(pki.client_key_path) == 0o600


def test_ensure_local_pki_renews_leaves_that_expire_soon_but_keeps_the_ca(tmp_path):
    """29 days before the leaves expire both are issued again by the same CA; the CA is kept."""
    folder = tmp_path / "pki"
    pki = ensure_local_pki(folder, now=NOW)
    before = _all_files(folder)
    later = load_certificate(pki.server_cert_path).not_valid_after_utc - timedelta(days=29)
    ensure_local_pki(folder, now=later)
    after = _all_files(folder)
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    for name in ("server.crt", "server.key", "demo-terminal.crt", "demo-terminal.key"):
        assert after[name] != before[name], name
    assert not needs_renewal(load_certificate(pki.server_cert_path), now=later)
    assert is_signed_by(load_certificate(pki.server_cert_path), load_certificate(pki.ca_cert_path))


def test_ensure_local_pki_replaces_everything_when_the_ca_expires_soon(tmp_path):
    """A CA within 30 days of expiry is replaced, and so is everything it signed."""
    folder = tmp_path / "pki"
    ensure_local_pki(folder, now=NOW)
    before = _all_files(folder)
    later = NOW + timedelta(days=certificates.CA_VALID_DAYS - 20)
    pki = ensure_local_pki(folder, now=later)
    after = _all_files(folder)
    assert all(after[name] != before[name] for name in before)
    assert not needs_renewal(load_certificate(pki.ca_cert_path), now=later)


@pytest.mark.parametrize("damage", ["missing client key", "foreign server key", "garbage server cert", "missing ca"])
def test_ensure_local_pki_repairs_missing_or_mismatched_files(tmp_path, damage):
    """A missing, unreadable or mismatched file is issued again (a missing CA: everything is)."""
    folder = tmp_path / "pki"
    pki = ensure_local_pki(folder, now=NOW)
    before = _all_files(folder)
    if damage == "missing client key":
        pki.client_key_path.unlink()
    elif damage == "foreign server key":
        pki.server_key_path.write_bytes(certificates.private_key_pem(certificates.new_private_key()))
    elif damage == "garbage server cert":
        pki.server_cert_path.write_text("not a certificate")
    else:
        pki.ca_cert_path.unlink()
    ensure_local_pki(folder, now=NOW)
    after = _all_files(folder)
    ca_certificate = load_certificate(pki.ca_cert_path)
    for cert_path, key_path in ((pki.server_cert_path, pki.server_key_path), (pki.client_cert_path, pki.client_key_path)):
        certificate, key = load_certificate(cert_path), certificates.load_private_key(key_path)
        assert certificate.public_key() == key.public_key() and is_signed_by(certificate, ca_certificate)
    if damage == "missing ca":
        assert after["ca.key"] != before["ca.key"]
    else:
        assert after["ca.crt"] == before["ca.crt"]


def test_ensure_local_pki_reissues_the_server_certificate_for_other_names(tmp_path):
    """Asking for other server names (e.g. another listen address) issues a server certificate for exactly those."""
    folder = tmp_path / "pki"
    ensure_local_pki(folder, now=NOW)
    pki = ensure_local_pki(folder, server_names=["127.0.0.1", "localhost", "till.example"], now=NOW)
    assert certificates.subject_alternative_names(load_certificate(pki.server_cert_path)) == {
        "127.0.0.1", "localhost", "till.example",
    }
