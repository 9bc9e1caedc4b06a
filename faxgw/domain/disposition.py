"""What the engine does after a send: the one verdict every transport's outcome becomes.

A transport adapter classifies a server's answer once, at its boundary (the SMTP reply
table in :mod:`faxgw.transport.smtp.replies`; the Graph adapter's status table next), into a
:class:`Disposition` and a status code. The engine branches on the enum, never on text.
"""

from __future__ import annotations

from enum import StrEnum


class Disposition(StrEnum):
    """What the engine does with a job after an outcome."""

    SENT = "sent"              # accepted: record it
    RETRY = "retry"            # defer with backoff
    THROTTLE = "throttle"      # retry, and slow down for this mailbox
    WAIT = "wait"              # the server named a wait (Retry-After): defer by it, no attempt
    PAUSE = "pause"            # the mailbox cannot send at all now: hold its queue
    AUTH = "auth"              # a person must sign in or change settings: account waits
    PERMANENT = "permanent"    # fail the job with its code

    @property
    def pauses_account(self) -> bool:
        """True when the verdict stops the whole sending mailbox, not just this job."""
        return self in (Disposition.PAUSE, Disposition.AUTH)
