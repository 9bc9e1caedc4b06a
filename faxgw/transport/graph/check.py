"""Whether a mailbox may send through Graph, found out without sending anything.

Graph has no "may I send?" question. The nearest harmless call is
``GET /users/{mailbox}/mailboxSettings``: it reaches the mailbox with the same token, through
the same application access policy or RBAC for Applications scope, and fails the same way
when the mailbox is not on Exchange Online. It needs ``MailboxSettings.Read`` (or
``Mail.Read``), which Entra puts into every Graph token of the app once granted; without it
Graph refuses the call with a plain ``ErrorAccessDenied`` and nothing can be concluded.

The verdict is a table from the code the answer table (:mod:`faxgw.transport.graph.answers`)
gives the answer; a code not listed (throttling, a fault at Graph, no connection, a token
refused twice) is an error of the check itself and is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ...domain import codes


class Verdict(StrEnum):
    """What the check found."""

    MAY_SEND = "may send"
    DENIED = "denied"
    CANNOT_CHECK = "cannot check"


#: The answer table's code for the check's answer → the verdict.
VERDICTS: dict[int, Verdict] = {
    codes.SENT: Verdict.MAY_SEND,
    codes.SEND_AS_DENIED: Verdict.DENIED,
    codes.APP_ACCESS_POLICY: Verdict.DENIED,
    codes.MAILBOX_NOT_ON_GRAPH: Verdict.DENIED,
    codes.REJECTED: Verdict.DENIED,  # 404: no such mailbox
    codes.CONSENT_MISSING: Verdict.CANNOT_CHECK,
}

#: Said when the check was refused for want of a permission to read the mailbox's settings.
CANNOT_CHECK = ("cannot check without Mail.Read or MailboxSettings.Read: Graph refused to "
                "read the mailbox's settings, which says nothing about sending (grant one of "
                "them to the app to have 'faxgw auth test' check the mailbox)")


@dataclass(frozen=True, slots=True)
class MailboxCheck:
    """The verdict on one mailbox, with the answer it rests on."""

    mailbox: str
    verdict: Verdict
    #: The status code of the answer (100 when the mailbox answered).
    code: int
    #: Graph's answer as given (``200 OK``, ``403 ErrorAccessDenied: …``).
    reply: str
    why: str

    @property
    def line(self) -> str:
        """One line for people: ``fax@contoso.com may send through Graph``."""
        if self.verdict is Verdict.MAY_SEND:
            return f"{self.mailbox} may send through Graph ({self.why})"
        if self.verdict is Verdict.DENIED:
            return (f"{self.mailbox} may not send through Graph: denied, code {self.code} "
                    f"({self.reply}; {self.why})")
        return f"{self.mailbox}: {CANNOT_CHECK} ({self.reply})"
