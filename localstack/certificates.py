"""A small local PKI for the terminals' TLS listener: one CA, Envoy's server certificate, a demo client.

`make run` and the tests need real certificates for the TLS (and optional mutual TLS) listener of
Envoy, without asking anybody for them. `ensure_local_pki(folder)` creates them once and keeps them
in `folder` (the stack's state folder, `.local/pki/` for `make run`), so a restart keeps the same CA
and terminals that trust it keep working:

    ca.crt                      the local CA (ECDSA P-256, 10 years): what terminals trust, and what
                                Envoy trusts for client certificates
    ca.key                      its private key (0600), kept to renew the others
    server.crt / server.key     Envoy's terminal listener (SAN 127.0.0.1 and localhost, 1 year)
    demo-terminal.crt / .key    a client certificate for the demo terminal (CN demo-terminal, URI SAN
                                urn:emoney:terminal:demo-terminal, 1 year)

Every private key is written with mode 0600 (never readable by another user, not even for a moment),
files are replaced atomically. A certificate is issued again when it is missing, unreadable, does not
match its key, is not signed by the current CA, names the wrong server or client, or expires within
30 days; a new CA re-issues everything. Nothing here is meant for production: there, certificates
come from the operator's own PKI and Envoy is given their paths.

The functions that make certificates are pure (time comes in as an argument), so they are tested
without touching the disk.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "e-Money local stack"
CA_COMMON_NAME = "e-Money local CA"
SERVER_COMMON_NAME = "e-Money terminal listener"
#: Common name of the demo terminal's client certificate.
DEMO_CLIENT_NAME = "demo-terminal"
#: A client certificate also names its terminal as a URI SAN (what Envoy can match and forward).
CLIENT_URI_PREFIX = "urn:emoney:terminal:"
#: What the server certificate is valid for: the names terminals dial on this machine.
DEFAULT_SERVER_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost")

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 365
#: Certificates this close to expiry are issued again at the next start.
RENEW_BEFORE = timedelta(days=30)
#: notBefore is set a little in the past, so a peer whose clock is slightly behind accepts them.
CLOCK_SKEW = timedelta(minutes=5)

CA_CERT_NAME, CA_KEY_NAME = "ca.crt", "ca.key"
SERVER_CERT_NAME, SERVER_KEY_NAME = "server.crt", "server.key"
CLIENT_CERT_NAME, CLIENT_KEY_NAME = "demo-terminal.crt", "demo-terminal.key"

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class LocalPki:
    """Paths of the local PKI's files (PEM)."""

    ca_cert_path: Path
    server_cert_path: Path
    server_key_path: Path
    client_cert_path: Path
    client_key_path: Path


# -- pure functions: keys and certificates ---------------------------------------------------------


def new_private_key() -> PrivateKey:
    """A fresh ECDSA key on P-256 (secp256r1)."""
    return ec.generate_private_key(ec.SECP256R1())


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """IP addresses become IP SANs, URNs URI SANs, everything else DNS SANs."""
    general: list[x509.GeneralName] = []
    for name in names:
        if name.startswith("urn:"):
            general.append(x509.UniformResourceIdentifier(name))
            continue
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def _leaf_key_usage() -> x509.KeyUsage:
    # ECDSA keys sign the handshake; nothing else.
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )


def create_ca(
    common_name: str = CA_COMMON_NAME, *, now: datetime | None = None, valid_days: int = CA_VALID_DAYS
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    now = _now(now)
    key = new_private_key()
    name = _name(common_name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _issue(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alternative_names: Sequence[str],
    now: datetime,
    valid_days: int,
) -> tuple[x509.Certificate, PrivateKey]:
    key = new_private_key()
    # Never valid longer than the CA that vouches for it.
    not_after = min(now + timedelta(days=valid_days), ca_certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if alternative_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(alternative_names)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def issue_server_certificate(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    names: Sequence[str] = DEFAULT_SERVER_NAMES,
    *,
    now: datetime | None = None,
    valid_days: int = LEAF_VALID_DAYS,
) -> tuple[x509.Certificate, PrivateKey]:
    """A TLS server certificate (serverAuth) for `names` (IP addresses and DNS names), signed by the CA."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    return _issue(ca_certificate, ca_key, SERVER_COMMON_NAME, ExtendedKeyUsageOID.SERVER_AUTH, names, _now(now), valid_days)


def issue_client_certificate(
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str = DEMO_CLIENT_NAME,
    *,
    now: datetime | None = None,
    valid_days: int = LEAF_VALID_DAYS,
) -> tuple[x509.Certificate, PrivateKey]:
    """A TLS client certificate (clientAuth) with subject CN `common_name` and the URI SAN
    `urn:emoney:terminal:<common_name>`, signed by the CA."""
    return _issue(
        ca_certificate, ca_key, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, (CLIENT_URI_PREFIX + common_name,), _now(now), valid_days
    )


def needs_renewal(certificate: x509.Certificate, *, now: datetime | None = None, margin: timedelta = RENEW_BEFORE) -> bool:
    """True when the certificate is not valid yet, or no longer valid `margin` from now."""
    now = _now(now)
    return now < certificate.not_valid_before_utc or now + margin >= certificate.not_valid_after_utc


def is_signed_by(certificate: x509.Certificate, ca_certificate: x509.Certificate) -> bool:
    """True when `ca_certificate` issued `certificate` (issuer name and signature)."""
    if certificate.issuer != ca_certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def subject_alternative_names(certificate: x509.Certificate) -> set[str]:
    """The certificate's DNS, IP and URI SANs as strings ("127.0.0.1", "localhost", "urn:...")."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {
        *extension.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in extension.get_values_for_type(x509.IPAddress)),
        *extension.get_values_for_type(x509.UniformResourceIdentifier),
    }


def common_name(certificate: x509.Certificate) -> str:
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else ""


def matches_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    return certificate.public_key() == key.public_key()


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (Envoy and gRPC read it as is; the file mode protects it)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


# -- files -----------------------------------------------------------------------------------------


def load_certificate(path: Path) -> x509.Certificate | None:
    """The certificate in a PEM file, or None when it is missing or unreadable."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None


def load_private_key(path: Path) -> PrivateKey | None:
    """The EC private key in a PEM file, or None when it is missing, unreadable or not an EC key."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode` from the first byte on (no window with a wider mode)."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    _write_atomically(path, certificate_pem(certificate), 0o644)


def write_private_key(path: Path, key: PrivateKey) -> None:
    _write_atomically(path, private_key_pem(key), 0o600)


def _usable(certificate: x509.Certificate | None, key: PrivateKey | None, now: datetime) -> bool:
    return certificate is not None and key is not None and matches_key(certificate, key) and not needs_renewal(certificate, now=now)


def ensure_local_pki(
    folder: Path,
    *,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    client_name: str = DEMO_CLIENT_NAME,
    now: datetime | None = None,
) -> LocalPki:
    """Create (or keep, or renew) the local CA, Envoy's server certificate and the demo client certificate.

    Idempotent: files that are still good are left alone, so restarts keep the same CA. See the module
    docstring for when something is issued again.
    """
    now = _now(now)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    pki = LocalPki(
        ca_cert_path=folder / CA_CERT_NAME,
        server_cert_path=folder / SERVER_CERT_NAME,
        server_key_path=folder / SERVER_KEY_NAME,
        client_cert_path=folder / CLIENT_CERT_NAME,
        client_key_path=folder / CLIENT_KEY_NAME,
    )
    ca_key_path = folder / CA_KEY_NAME

    ca_certificate, ca_key = load_certificate(pki.ca_cert_path), load_private_key(ca_key_path)
    new_ca = not _usable(ca_certificate, ca_key, now) or not is_signed_by(ca_certificate, ca_certificate)
    if new_ca:
        ca_certificate, ca_key = create_ca(now=now)
        write_private_key(ca_key_path, ca_key)
        write_certificate(pki.ca_cert_path, ca_certificate)
    assert ca_certificate is not None and ca_key is not None

    server_certificate, server_key = load_certificate(pki.server_cert_path), load_private_key(pki.server_key_path)
    if (
        new_ca
        or not _usable(server_certificate, server_key, now)
        or not is_signed_by(server_certificate, ca_certificate)
        or subject_alternative_names(server_certificate) != set(_normalised(server_names))
    ):
        server_certificate, server_key = issue_server_certificate(ca_certificate, ca_key, server_names, now=now)
        write_private_key(pki.server_key_path, server_key)
        write_certificate(pki.server_cert_path, server_certificate)

    client_certificate, client_key = load_certificate(pki.client_cert_path), load_private_key(pki.client_key_path)
    if (
        new_ca
        or not _usable(client_certificate, client_key, now)
        or not is_signed_by(client_certificate, ca_certificate)
        or common_name(client_certificate) != client_name
    ):
        client_certificate, client_key = issue_client_certificate(ca_certificate, ca_key, client_name, now=now)
        write_private_key(pki.client_key_path, client_key)
        write_certificate(pki.client_cert_path, client_certificate)

    # Keys written by an older version, or chmod-ed by hand: private keys are never readable by others.
    for key_path in (ca_key_path, pki.server_key_path, pki.client_key_path):
        os.chmod(key_path, 0o600)
    return pki


def _normalised(names: Sequence[str]) -> list[str]:
    """Names as they read back from a certificate (IP addresses in canonical form)."""
    result = []
    for name in names:
        try:
            result.append(str(ipaddress.ip_address(name)))
        except ValueError:
            result.append(name)
    return result
