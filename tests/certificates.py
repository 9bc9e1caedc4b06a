"""Client certificates for app registrations, made the way an administrator makes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def app_certificate(folder: Path, name: str = "app") -> tuple[Path, bytes, bytes]:
    """A self-signed RSA certificate as an admin makes one for an app registration: the
    PEM file faxgw reads (key and certificate), the certificate alone, and the key alone."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"faxgw {name}")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=365))
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    path = folder / f"{name}.pem"
    path.write_bytes(key_pem + cert_pem)
    path.chmod(0o600)
    return path, cert_pem, key_pem


def as_pkcs12(path: Path, key_pem: bytes, certificate_pem: bytes, password: bytes) -> Path:
    """The key and certificate as a password-protected PKCS#12 (.pfx) file, as exported from
    Windows or Azure Key Vault."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"faxgw", key, x509.load_pem_x509_certificate(certificate_pem), None,
        serialization.BestAvailableEncryption(password)))
    path.chmod(0o600)
    return path


def encrypted_pem(path: Path, key_pem: bytes, certificate_pem: bytes, password: bytes) -> Path:
    """The key encrypted with ``password`` and the certificate, in one PEM file."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(password))
                     + certificate_pem)
    path.chmod(0o600)
    return path
