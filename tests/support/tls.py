"""Real TLS material made in the test (library ``cryptography``): a CA, a server certificate for 127.0.0.1, a
client certificate, and bcrypt hashes; plus a web config file in the Prometheus exporter-toolkit format.

    pki = make_pki(tmp_path)                      # Pki with .ca_cert, .server_cert, .server_key, .client_*
    config = write_web_config(tmp_path / "web.yml", pki, users={"prom": "s3cret"})
    context = pki.client_context()                # ssl.SSLContext trusting the CA (for urllib)
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files made by :func:`make_pki`."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, with_client_cert: bool = False) -> ssl.SSLContext:
        """A client ``SSLContext`` that trusts only our CA (optionally presenting the client certificate)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        if with_client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(folder: Path) -> Pki:
    """A CA and, signed by it, a server certificate (127.0.0.1, ::1, localhost) and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("locust-metrics test CA")).issuer_name(_name("locust-metrics test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
    ])
    client_key, client_cert = leaf("prometheus", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(
        ca_cert=_write_cert(folder / "ca.crt", ca_cert),
        server_cert=_write_cert(folder / "server.crt", server_cert),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_cert(folder / "client.crt", client_cert),
        client_key=_write_key(folder / "client.key", client_key),
    )


def bcrypt_hash(password: str, rounds: int = 4) -> str:
    """A bcrypt hash of ``password`` (low cost: tests only; production hashes use 10 or more)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def write_web_config(path: Path, pki: Pki | None = None, users: dict[str, str] | None = None,
                     relative: bool = True, **tls_extra: str) -> Path:
    """Write an exporter-toolkit web config: TLS with ``pki``'s server certificate, basic auth for ``users``.

    ``users`` maps user names to clear-text passwords; the file holds bcrypt hashes. With ``relative``
    the certificate paths are written relative to the file's folder (as exporter-toolkit resolves them).
    """
    config: dict = {}
    if pki is not None:
        def where(file: Path) -> str:
            return str(file.relative_to(path.parent)) if relative and file.is_relative_to(path.parent) else str(file)

        config["tls_server_config"] = {"cert_file": where(pki.server_cert), "key_file": where(pki.server_key), **tls_extra}
    if users:
        config["basic_auth_users"] = {user: bcrypt_hash(password) for user, password in users.items()}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
