"""``[intake.smtp]``: the SMTP listener that scanners and multifunction devices send faxes to.

A device's "scan to email" names ``<number>@<domain>`` as the recipient; every message
becomes one job per recipient number. Off unless ``listen`` is set.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import ListenAddress, OptionalPath, Section
from .values import parse_duration

__all__ = ["IntakeSmtpConfig"]


class IntakeSmtpConfig(Section):
    """``[intake.smtp]``: where devices connect, who may, and what a message becomes."""


    #: ``host:port``; "" = no listener in ``faxgw run``.
    listen: ListenAddress = ""
    #: Recipients are ``<number>@domain``; any other domain is refused at RCPT.
    domain: str = "fax.local"
    #: Clients allowed to connect at all (addresses or networks); loopback by default.
    networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    auth: Literal["none", "password"] = "none"
    #: ``name:argon2hash`` per line, written by ``faxgw intake user NAME``.
    users_file: OptionalPath = None
    #: STARTTLS is offered when set; required for ``auth = "password"``.
    certificate_file: OptionalPath = None
    key_file: OptionalPath = None
    require_tls: bool = False
    #: Advertised as SIZE; a larger message is refused with 552.
    max_message_bytes: Annotated[int, Field(ge=1)] = 36_700_160
    #: auto: the text body is the note (a page when nothing is attached); page; ignore.
    body: Literal["auto", "page", "ignore"] = "auto"
    #: Connections at once from one client address; more are refused at connect (421).
    max_connections_per_client: Annotated[int, Field(ge=1)] = 5
    #: Messages in one connection; then the client is told to reconnect (421).
    max_messages_per_connection: Annotated[int, Field(ge=1)] = 100
    #: How long the listener waits for a client's next command (or line of data).
    command_timeout: float = 300.0

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        text = value.strip().lower()
        if not text or "@" in text or any(c.isspace() for c in text):
            raise ValueError(f"{value!r} is not a mail domain such as fax.local")
        return text

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or network such as "
                                 "192.168.0.0/16") from None
        return [entry.strip() for entry in value]

    @field_validator("command_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _tls_for_passwords(self) -> IntakeSmtpConfig:
        if (self.certificate_file is None) != (self.key_file is None):
            raise ValueError("certificate_file and key_file: give both (STARTTLS) or neither")
        if self.require_tls and self.certificate_file is None:
            raise ValueError("require_tls needs certificate_file and key_file")
        # A password sent without TLS can be read by anyone on the network.
        if self.auth == "password" and (self.certificate_file is None
                                        or self.users_file is None):
            raise ValueError('auth = "password" needs users_file, certificate_file and '
                             "key_file (AUTH is offered only after STARTTLS)")
        return self
