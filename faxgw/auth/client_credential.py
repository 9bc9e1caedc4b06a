"""The app's own credential for app-only sending (``flow = "client_credentials"``).

Entra ID accepts a client secret or a certificate. A certificate is the stronger choice (the
private key never leaves this machine; msal signs a short-lived assertion with it), so when
``[auth] client_certificate_file`` is set it is used and a secret is ignored.

The certificate file is either one PEM file holding the private key (RSA, which Entra ID
requires) and the certificate uploaded to the app registration, e.g.
``cat key.pem cert.pem > faxgw-app.pem; chmod 600 faxgw-app.pem``, or a PKCS#12 file
(``.pfx``, ``.p12``) as Windows and Azure tools export it. An encrypted key or PKCS#12 file is
opened with the password in ``[auth] client_certificate_password_file`` or
``FAXGW_CLIENT_CERTIFICATE_PASSWORD``. The file is checked when first used: key and
certificate present, the certificate belonging to the key. Messages name the file, never its
contents.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12

from ..config import CLIENT_CERTIFICATE_PASSWORD_ENV, CLIENT_SECRET_ENV, AuthConfig
from ..domain.errors import ConfigError

log = logging.getLogger("faxgw.auth")

__all__ = ["certificate_credential", "certificate_password", "client_credential",
           "client_secret"]

_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_KEY = re.compile(r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+?"
                  r"-----END \1?PRIVATE KEY-----", re.DOTALL)
_KEY_NAME = "[auth] client_certificate_file"


def client_credential(auth: AuthConfig) -> str | dict[str, str]:
    """The secret, or msal's certificate credential when a certificate file is set."""
    if auth.client_certificate_file is not None:
        return certificate_credential(auth.client_certificate_file, certificate_password(auth))
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


def certificate_credential(path: Path, password: bytes | None = None) -> dict[str, str]:
    """msal's ``client_credential`` for the certificate file at ``path``: one PEM file with
    the private key and the certificate, or a PKCS#12 file (``.pfx``, ``.p12``). ``password``
    opens an encrypted key or PKCS#12 file; the key handed to msal stays in memory only."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{_KEY_NAME}: cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() in (".pfx", ".p12"):
        key, certificates = _from_pkcs12(path, data, password)
    else:
        key, certificates = _from_pem(path, data, password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{_KEY_NAME}: the key in {path} is not an RSA key "
                          "(Entra ID takes RSA certificates)")
    if _public(certificates[0].public_key()) != _public(key.public_key()):
        raise ConfigError(f"{_KEY_NAME}: the first certificate in {path} does not belong to "
                          "its private key")
    if mode & 0o077:
        log.warning("%s: %s can be read by other users; make it mode 0600", _KEY_NAME, path)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    return {"private_key": key_pem, "public_certificate": "".join(
        certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        for certificate in certificates)}


def certificate_password(auth: AuthConfig) -> bytes | None:
    """``FAXGW_CLIENT_CERTIFICATE_PASSWORD``, else ``[auth] client_certificate_password_file``."""
    from_env = os.environ.get(CLIENT_CERTIFICATE_PASSWORD_ENV)
    if from_env:
        return from_env.strip().encode("utf-8")
    path = auth.client_certificate_password_file
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip().encode("utf-8")
    except OSError as exc:
        raise ConfigError(f"[auth] client_certificate_password_file: cannot read {path}: "
                          f"{exc.strerror}") from None


def _from_pem(path: Path, data: bytes, password: bytes | None
              ) -> tuple[PrivateKeyTypes, list[x509.Certificate]]:
    text = data.decode("ascii", "replace")
    key_match = _KEY.search(text)
    certificates = _CERTIFICATE.findall(text)
    if key_match is None or not certificates:
        missing = ("neither a private key nor a certificate" if key_match is None and
                   not certificates else "no private key" if key_match is None
                   else "no certificate")
        raise ConfigError(f"{_KEY_NAME}: {path} has {missing} (PEM); put the private key "
                          "and the app's certificate in one file, or use a .pfx file")
    encrypted = key_match.group(1) == "ENCRYPTED "
    if encrypted and password is None:
        raise ConfigError(f"{_KEY_NAME}: the private key in {path} is encrypted: put its "
                          f"password in [auth] client_certificate_password_file or "
                          f"{CLIENT_CERTIFICATE_PASSWORD_ENV}")
    try:
        key = serialization.load_pem_private_key(key_match.group().encode(),
                                                 password=password if encrypted else None)
        loaded = [x509.load_pem_x509_certificate(pem.encode()) for pem in certificates]
    except (ValueError, TypeError):
        cause = "the password is wrong, or they" if encrypted else "they"
        raise ConfigError(f"{_KEY_NAME}: the private key or certificate in {path} cannot be "
                          f"read ({cause} are damaged)") from None
    return key, loaded


def _from_pkcs12(path: Path, data: bytes, password: bytes | None
                 ) -> tuple[PrivateKeyTypes, list[x509.Certificate]]:
    try:
        key, certificate, more = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError):
        hint = ("the password is wrong" if password else
                f"it may need a password: [auth] client_certificate_password_file or "
                f"{CLIENT_CERTIFICATE_PASSWORD_ENV}")
        raise ConfigError(f"{_KEY_NAME}: {path} cannot be opened as a PKCS#12 file "
                          f"({hint})") from None
    if key is None or certificate is None:
        raise ConfigError(f"{_KEY_NAME}: {path} holds no "
                          f"{'private key' if key is None else 'certificate'}")
    return key, [certificate, *more]


def _public(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
