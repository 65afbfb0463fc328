"""A throwaway certificate authority, so loopback test servers can speak HTTPS.

Azurite only accepts bearer tokens over HTTPS. `TestAuthority` writes a CA, a server certificate
for 127.0.0.1 and localhost signed by it, and `bundle.pem`: certifi's bundle plus our CA. Pointing
`REQUESTS_CA_BUNDLE` at the bundle makes requests (and so azure-core) trust the loopback servers
while every public certificate stays trusted as before.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test session, short enough that a leaked file is soon worthless.
VALIDITY = datetime.timedelta(days=2)
# Clocks of the processes involved may differ a little.
BACKDATE = datetime.timedelta(minutes=5)
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1",)


class TestAuthority:
    """A CA and a loopback server certificate as PEM files in `directory`.

    Attributes: `ca_path` (the CA certificate), `cert_path` and `key_path` (the server's
    certificate and unencrypted private key), `bundle_path` (certifi's bundle plus the CA).
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ca_path = directory / "ca.pem"
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server-key.pem"
        self.bundle_path = directory / "bundle.pem"
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pacta test authority")])
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])])
        alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
        alternative_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in SERVER_ADDRESSES]
        server_cert = (
            _builder(server_name, ca_name, server_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        self.ca_path.write_bytes(ca_pem)
        self.cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public_roots = Path(certifi.where()).read_bytes().rstrip(b"\n")
        self.bundle_path.write_bytes(public_roots + b"\n" + ca_pem)

    @property
    def tls(self) -> tuple[Path, Path]:
        """(certificate, key) of the loopback server, as `start_azurite(tls=...)` takes them."""
        return self.cert_path, self.key_path


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
