"""The app's own credential for app-only sending (``flow = "client_credentials"``).

Entra ID accepts a client secret or a certificate. A certificate is the stronger choice (the
private key never leaves this machine; msal signs a short-lived assertion with it), so when
``[auth] client_certificate_file`` is set it is used and a secret is ignored.

The certificate file is one PEM file holding the unencrypted private key (RSA, which Entra ID
requires) and the certificate uploaded to the app registration, e.g.
``cat key.pem cert.pem > faxgw-app.pem; chmod 600 faxgw-app.pem``. It is checked when first
used: both parts present, and the certificate belonging to the key. Messages name the file,
never its contents.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import CLIENT_SECRET_ENV, AuthConfig
from ..errors import ConfigError

log = logging.getLogger("faxgw.auth")

__all__ = ["certificate_credential", "client_credential", "client_secret"]

_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_KEY = re.compile(r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+?"
                  r"-----END \1?PRIVATE KEY-----", re.DOTALL)
_KEY_NAME = "[auth] client_certificate_file"


def client_credential(auth: AuthConfig) -> str | dict[str, str]:
    """The secret, or msal's certificate credential when a certificate file is set."""
    if auth.client_certificate_file is not None:
        return certificate_credential(auth.client_certificate_file)
    return client_secret(auth)


def client_secret(auth: AuthConfig) -> str:
    """``FAXGW_CLIENT_SECRET``, else the contents of ``[auth] client_secret_file``."""
    from_env = os.environ.get(CLIENT_SECRET_ENV)
    if from_env:
        return from_env.strip()
    path = auth.client_secret_file
    if path is None:
        raise ConfigError(f"[auth] client_secret_file: flow \"client_credentials\" needs it, "
                          f"or {CLIENT_SECRET_ENV}, or [auth] client_certificate_file")
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[auth] client_secret_file: cannot read {path}: "
                          f"{exc.strerror}") from None


def certificate_credential(path: Path) -> dict[str, str]:
    """msal's ``client_credential`` for the PEM file at ``path`` (key and certificate)."""
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) else "not a PEM text file"
        raise ConfigError(f"{_KEY_NAME}: cannot read {path}: {cause}") from None
    key_match = _KEY.search(text)
    certificates = _CERTIFICATE.findall(text)
    if key_match is None or not certificates:
        missing = ("neither a private key nor a certificate" if key_match is None and
                   not certificates else "no private key" if key_match is None
                   else "no certificate")
        raise ConfigError(f"{_KEY_NAME}: {path} has {missing} (PEM); put the private key "
                          "and the app's certificate in one file")
    if key_match.group(1) == "ENCRYPTED ":
        raise ConfigError(f"{_KEY_NAME}: the private key in {path} is encrypted; faxgw reads "
                          "it unencrypted (keep the file readable by faxgw only: mode 0600)")
    try:
        key = serialization.load_pem_private_key(key_match.group().encode(), password=None)
        certificate = x509.load_pem_x509_certificate(certificates[0].encode())
    except (ValueError, TypeError):
        raise ConfigError(f"{_KEY_NAME}: the private key or certificate in {path} cannot be "
                          "read") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{_KEY_NAME}: the key in {path} is not an RSA key "
                          "(Entra ID takes RSA certificates)")
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError(f"{_KEY_NAME}: the first certificate in {path} does not belong to "
                          "its private key")
    if mode & 0o077:
        log.warning("%s: %s can be read by other users; make it mode 0600", _KEY_NAME, path)
    return {"private_key": key_match.group(), "public_certificate": "\n".join(certificates)}
