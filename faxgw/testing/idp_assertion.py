"""Checking a client assertion the way Entra ID does, for :mod:`faxgw.testing.idp`.

An app that signs in with a certificate (``private_key_jwt``) sends a JWT signed with its
private key instead of a secret. Entra ID finds the certificate by the thumbprint in the
JWT's header (``x5t#S256``, or ``x5t`` for SHA-1), checks the signature with the certificate's
public key, and that the JWT is for this token endpoint, by this app, and within its time.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["JWT_BEARER", "verify_client_assertion"]

#: ``client_assertion_type`` of a JWT client assertion (RFC 7523).
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: AADSTS codes: the signature or certificate is wrong; the assertion is not valid now.
INVALID_SIGNATURE = 700027
OUTSIDE_VALID_TIME = 700024


def _thumbprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return base64.urlsafe_b64encode(certificate.fingerprint(algorithm)).decode().rstrip("=")


def verify_client_assertion(assertion: str, certificates: Iterable[bytes], *, client_id: str,
                            token_endpoint_prefix: str, now: float) -> int | None:
    """None when ``assertion`` is a valid assertion by ``client_id`` signed with one of
    ``certificates`` (PEM); else the AADSTS code Entra ID answers with."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        return INVALID_SIGNATURE
    wanted_sha256 = str(header.get("x5t#S256", "")).rstrip("=")
    wanted_sha1 = str(header.get("x5t", "")).rstrip("=")
    for pem in certificates:
        certificate = x509.load_pem_x509_certificate(pem)
        if (wanted_sha256 != _thumbprint(certificate, hashes.SHA256())
                and wanted_sha1 != _thumbprint(certificate, hashes.SHA1())):  # noqa: S303
            continue
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return INVALID_SIGNATURE  # Entra ID takes RSA certificates only
        try:
            claims = jwt.decode(
                assertion, key, algorithms=["PS256", "RS256"],
                issuer=client_id, options={"verify_aud": False, "verify_exp": False,
                                           "verify_nbf": False, "verify_iat": False,
                                           "require": ["aud", "iss", "sub", "exp"]})
        except jwt.InvalidTokenError:
            return INVALID_SIGNATURE
        audience = str(claims.get("aud", ""))
        if claims.get("sub") != client_id or not (
                audience.startswith(token_endpoint_prefix)
                and audience.endswith("/oauth2/v2.0/token")):
            return INVALID_SIGNATURE
        # The identity provider's own clock (tests move it), with Entra's 5 minutes of skew.
        if not float(claims.get("nbf", 0)) - 300 <= now <= float(claims["exp"]) + 300:
            return OUTSIDE_VALID_TIME
        return None
    return INVALID_SIGNATURE
