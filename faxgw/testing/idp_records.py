"""What the local identity provider keeps: Entra's error wording, and its records of the
tokens, device codes and scripted failures it deals in (see :mod:`faxgw.testing.idp`)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Entra's wording for the errors the switches produce (first sentence as Entra sends it).
DESCRIPTIONS: dict[int, tuple[str, str]] = {
    700082: ("invalid_grant", "The refresh token has expired due to inactivity. The token was "
             "issued on 2025-01-01T00:00:00Z and was inactive for 90.00:00:00."),
    70008: ("invalid_grant", "The provided authorization code or refresh token has expired due "
            "to inactivity. Send a new interactive authorization request for this user."),
    50173: ("invalid_grant", "The provided grant has expired due to it being revoked, a fresh "
            "auth token is needed. The user might have changed or reset their password."),
    70043: ("invalid_grant", "The refresh token has expired or is invalid due to sign-in "
            "frequency checks by conditional access."),
    65001: ("invalid_grant", "The user or administrator has not consented to use the "
            "application. Send an interactive authorization request for this user and resource."),
    50076: ("invalid_grant", "Due to a configuration change made by your administrator, or "
            "because you moved to a new location, you must use multi-factor authentication."),
    50079: ("invalid_grant", "Due to a configuration change made by your administrator, or "
            "because you moved to a new location, you must enroll in multi-factor "
            "authentication."),
    53003: ("invalid_grant", "Access has been blocked by Conditional Access policies. The "
            "access policy does not allow token issuance."),
    530035: ("invalid_grant", "Access has been blocked by security defaults. This is due to "
             "the request using legacy auth or being deemed unsafe."),
    7000218: ("invalid_client", "The request body must contain the following parameter: "
              "'client_assertion' or 'client_secret'."),
    700016: ("unauthorized_client", "Application was not found in the directory. This can "
             "happen if the application has not been installed by the administrator."),
    7000215: ("invalid_client", "Invalid client secret provided. Ensure the secret being sent "
              "in the request is the client secret value, not the client secret ID."),
    700027: ("invalid_client", "Client assertion failed signature validation, or the "
             "certificate used to sign it is not registered on the application."),
    700024: ("invalid_client", "Client assertion is not within its valid time range."),
    7000222: ("invalid_client", "The provided client secret keys for app are expired. Visit "
              "the Azure portal to create new keys for your app."),
    70016: ("authorization_pending", "OAuth 2.0 device flow error. Authorization is pending. "
            "Continue polling."),
    70019: ("expired_token", "Verification code expired."),
}
#: Device flow answers and the AADSTS code Entra gives with each (None: none).
DEVICE_ERRORS = {
    "authorization_pending": 70016,
    "slow_down": None,
    "expired_token": 70019,
    "authorization_declined": None,
    "bad_verification_code": None,
}


@dataclass
class IssuedToken:
    """An access token this IdP issued: for whom and until when (IdP clock)."""

    account: str | None  # None: app-only (client credentials)
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class RefreshToken:
    """A refresh token and, once killed, the AADSTS code it answers with."""

    account: str
    client_id: str
    dead_with: int | None = None


@dataclass
class DeviceCode:
    """One device authorization in progress."""

    user_code: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    polls: int = 0
    approved_by: str | None = None
    finished: bool = False


@dataclass
class Failure:
    """A scripted failure of a grant: ``times`` left (None: until cleared)."""

    grant: str
    aadsts: int
    error: str
    status: int
    account: str | None = None
    times: int | None = None


@dataclass
class Switches:
    """How the device flow goes (tests set these through the provider's attributes)."""

    device_script: list[str] = field(default_factory=list)
    device_outcome: str = "approve"
    auto_approve_account: str | None = None
