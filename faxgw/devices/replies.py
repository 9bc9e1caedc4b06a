"""Every answer the SMTP intake gives a device, as data: one table, no reply text elsewhere.

A device shows the reply's text on its panel or in its log, and decides by the first digit
whether to try again (4xx) or give up (5xx); the enhanced status code (RFC 3463) says what
kind of problem it is. So each refusal names its cause and, where the gateway has one, the
faxgw status code, in plain ASCII on one line.
"""

from __future__ import annotations

import enum

__all__ = ["REPLIES", "Answer", "code_of", "reply"]


class Answer(enum.Enum):
    """What the listener tells a client, at the earliest moment it can know it."""

    CLIENT_NOT_ALLOWED = "client-not-allowed"
    TOO_MANY_CONNECTIONS = "too-many-connections"
    TOO_MANY_MESSAGES = "too-many-messages"
    FOREIGN_DOMAIN = "foreign-domain"
    INVALID_NUMBER = "invalid-number"
    REFUSED_NUMBER = "refused-number"
    NOTIFY_ADDRESS = "notify-address"
    TOO_MANY_RECIPIENTS = "too-many-recipients"
    SENDER_OK = "sender-ok"
    RECIPIENT_OK = "recipient-ok"
    NOTHING_TO_FAX = "nothing-to-fax"
    REFUSED_INPUT = "refused-input"
    SPOOL_FULL = "spool-full"
    STORE_DOWN = "store-down"
    NOT_TAKEN = "not-taken"
    ACCEPTED = "accepted"


#: answer → (reply code, enhanced status code, text with ``{placeholders}``).
REPLIES: dict[Answer, tuple[int, str, str]] = {
    # At connect: the client is not in [intake.smtp] networks.
    Answer.CLIENT_NOT_ALLOWED: (554, "5.7.1", "{client} may not send faxes here "
                                              "(not in [intake.smtp] networks)"),
    Answer.TOO_MANY_CONNECTIONS: (421, "4.7.0", "Too many connections from {client} "
                                                "(limit {limit}); try again later"),
    Answer.TOO_MANY_MESSAGES: (421, "4.7.0", "{limit} messages in this connection; "
                                             "reconnect to send more"),
    # At RCPT: the recipient is not a fax number of this gateway.
    Answer.FOREIGN_DOMAIN: (550, "5.1.2", "<{address}> is not a fax address here; write "
                                          "<NUMBER@{domain}>"),
    Answer.INVALID_NUMBER: (550, "5.1.1", "<{address}>: {cause} (code {code})"),
    Answer.REFUSED_NUMBER: (550, "5.7.1", "<{address}>: {cause} (code {code})"),
    # At MAIL: the envelope sender is told how the job ends, so it must be one address.
    Answer.NOTIFY_ADDRESS: (553, "5.1.7", "<{address}> is not one email address such as "
                                          "name@example.com (code {code})"),
    Answer.TOO_MANY_RECIPIENTS: (452, "4.5.3", "Too many recipients (at most {limit} a "
                                               "message)"),
    Answer.SENDER_OK: (250, "2.1.0", "Sender OK"),
    Answer.RECIPIENT_OK: (250, "2.1.5", "Recipient OK: fax to {number}"),
    # After DATA.
    Answer.NOTHING_TO_FAX: (554, "5.6.0", "Nothing to fax: the message has no attachment "
                                          "and no text"),
    Answer.REFUSED_INPUT: (554, "5.6.0", "{cause} (code {code})"),
    Answer.SPOOL_FULL: (452, "4.3.1", "The gateway cannot store the message now: {cause}; "
                                      "try again later"),
    Answer.STORE_DOWN: (451, "4.3.0", "The gateway's job store is unavailable; try again "
                                      "later"),
    Answer.NOT_TAKEN: (451, "4.3.0", "The gateway could not take the message (code {code}); "
                                     "try again later"),
    Answer.ACCEPTED: (250, "2.0.0", "Accepted: {jobs}"),
}

#: Longer replies are cut: some devices show only one short line anyway.
_MAX_TEXT = 400


def reply(answer: Answer, **fields: object) -> str:
    """The reply line for ``answer``, its placeholders filled, as 7-bit ASCII on one line
    (the listener offers no SMTPUTF8, and a line break would forge a second reply)."""
    code, enhanced, template = REPLIES[answer]
    text = template.format(**fields)
    text = " ".join(text.split())  # no CR, LF or tabs: one line
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 3] + "..."
    return f"{code} {enhanced} {text}"


def code_of(answer: Answer) -> int:
    """The reply code ``answer`` is given with (for logs and tests)."""
    return REPLIES[answer][0]
