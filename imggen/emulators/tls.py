"""HTTPS for an emulator, as the real services are served: a certificate made for this machine.

The Replicate SDK wraps an output in ``FileOutput`` (``replicate.run(...).read()``) only when its URL
is ``https:`` (or ``data:``), so an emulator serving plain http hands the caller a ``str`` the real
service never does. :func:`local_certificate` makes a self-signed certificate for 127.0.0.1 and
localhost; a client trusts it through ``SSL_CERT_FILE`` (httpx, aiohttp and the SDKs read it).
Needs the ``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path


def local_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate and its key for ``host``, 127.0.0.1 and localhost, as PEM files in ``folder``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as missing:
        raise RuntimeError("an HTTPS emulator needs the cryptography package: pip install cryptography") from missing
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imggen emulator")])
    addresses = {ipaddress.ip_address("127.0.0.1")}
    names = {"localhost"}
    try:
        addresses.add(ipaddress.ip_address(host))
    except ValueError:
        names.add(host)
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([*map(x509.DNSName, sorted(names)),
                                                    *map(x509.IPAddress, sorted(addresses))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "emulator-cert.pem", folder / "emulator-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
