"""Reports as they arrive in the sending mailbox, written here from the formats the fax
services and mail servers document: bounces (Exchange Online's NDR, an RFC 3464 DSN from
another MTA), InterFAX confirmations in CSV and XML, free-text reports, and two messages that
are no report at all (an out-of-office reply, a newsletter).

Each builder takes the job it reports on (its id, Message-ID, number) and returns the bytes
as the mailbox holds them.
"""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

POLICY = email.policy.SMTP
MAILBOX = "fax@contoso.example"


def _base(subject: str, sender: str, *, in_reply_to: str = "") -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = MAILBOX
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    message["Message-ID"] = f"<{abs(hash((subject, sender, in_reply_to)))}@reports.example>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    return message


def _report(text: str, status: str, original: bytes, *, headers_only: bool,
            subject: str, sender: str, ndr: bool, in_reply_to: str) -> bytes:
    outer = _base(subject, sender, in_reply_to=in_reply_to)
    if ndr:
        outer["X-MS-Exchange-Message-Is-Ndr"] = ""
    outer.set_content(text)
    outer.make_mixed()
    outer.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    raw = outer.as_bytes()
    boundary = outer.get_boundary()
    assert boundary is not None
    kind = "text/rfc822-headers" if headers_only else "message/rfc822"
    body = original.split(b"\r\n\r\n", 1)[0] + b"\r\n" if headers_only else original
    closing = f"--{boundary}--".encode()
    extra = (f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n"
             f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n").encode() + body + b"\r\n"
    return raw.replace(closing, extra + closing)


def original_headers(job_id: str, message_id: str, number: str) -> bytes:
    """The fax email's headers as a bounce returns them."""
    return (f"From: {MAILBOX}\r\nTo: {number}@fax.example.net\r\nSubject: Fax to {number}\r\n"
            f"Message-ID: {message_id}\r\nX-Faxgw-Job: {job_id}\r\n"
            "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n").encode()


def exchange_ndr(job_id: str, message_id: str, number: str) -> bytes:
    """Exchange Online cannot deliver to the fax service's domain (a German tenant)."""
    status = ("Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com\r\n"
              "Received-From-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com\r\n"
              "Arrival-Date: Mon, 30 Nov 2026 08:59:58 +0000\r\n\r\n"
              f"Final-Recipient: rfc822;{number}@fax.example.net\r\n"
              "Action: failed\r\nStatus: 5.4.310\r\n"
              "Diagnostic-Code: smtp;550 5.4.310 DNS domain fax.example.net does not exist\r\n")
    return _report("Ihre Nachricht hat folgende Empfänger nicht erreicht.", status,
                   original_headers(job_id, message_id, number), headers_only=True,
                   subject=f"Unzustellbar: Fax to {number}",
                   sender="postmaster@contoso.example", ndr=True, in_reply_to=message_id)


def mta_dsn(job_id: str, message_id: str, number: str) -> bytes:
    """Another MTA bounces the fax email, returning it whole (no In-Reply-To)."""
    status = ("Reporting-MTA: dns; mx.fax.example.net\r\n"
              "Original-Envelope-Id: unknown\r\n\r\n"
              f"Final-Recipient: rfc822; {number}@fax.example.net\r\n"
              "Original-Recipient: rfc822;" + number + "@fax.example.net\r\n"
              "Action: failed\r\nStatus: 5.1.1\r\n"
              "Diagnostic-Code: smtp; 550 5.1.1 <" + number + "@fax.example.net>: "
              "Recipient address rejected: User unknown\r\n")
    return _report("This is the mail system at host mx.fax.example.net.\n\nI'm sorry to have "
                   "to inform you that your message could not be delivered.", status,
                   original_headers(job_id, message_id, number), headers_only=False,
                   subject="Undelivered Mail Returned to Sender",
                   sender="MAILER-DAEMON@mx.fax.example.net", ndr=False, in_reply_to="")


def delayed_dsn(job_id: str, message_id: str, number: str) -> bytes:
    """Delivery is delayed: no change yet."""
    status = ("Reporting-MTA: dns; mx.fax.example.net\r\n\r\n"
              f"Final-Recipient: rfc822; {number}@fax.example.net\r\n"
              "Action: delayed\r\nStatus: 4.4.1\r\n"
              "Will-Retry-Until: Tue, 1 Dec 2026 09:00:00 +0000\r\n")
    return _report("Delivery delayed.", status, original_headers(job_id, message_id, number),
                   headers_only=True, subject="Delayed Mail (still being retried)",
                   sender="MAILER-DAEMON@mx.fax.example.net", ndr=False, in_reply_to="")


_CSV_HEADER = ("TransactionID,Status,StatusDescription,PagesSubmitted,PagesSent,Subject,"
               "Destination,RemoteCSID,Duration,SubmitTime,CompletionTime")


def interfax_csv(number: str, *, status: int, description: str, pages: int = 2,
                 sent: int = 2, transaction: str = "1234567890", subject: str = "") -> bytes:
    """An InterFAX confirmation with its CSV as an attachment."""
    message = _base(f"Fax confirmation: {transaction}", "confirmations@interfax.example")
    message.set_content("Please find your fax transmission report attached.")
    row = (f"{transaction},{status},{description},{pages},{sent},"
           f"{subject or 'Fax to ' + number},{number},"
           f"+49 30 999999,42,2026-11-30 08:58:01,2026-11-30 08:59:12")
    message.add_attachment(f"{_CSV_HEADER}\r\n{row}\r\n".encode(), maintype="text",
                           subtype="csv", filename="confirmation.csv")
    return message.as_bytes()


def interfax_xml(number: str, *, status: int, description: str, pages: int = 4,
                 sent: int = 4, transaction: str = "2234567890", subject: str = "") -> bytes:
    """An InterFAX confirmation with XML as the message's text."""
    message = _base(f"Fax confirmation: {transaction}", "confirmations@interfax.example")
    message.set_content(
        '<?xml version="1.0" encoding="utf-8"?>\n<FaxConfirmation>\n'
        f"  <TransactionID>{transaction}</TransactionID>\n  <Status>{status}</Status>\n"
        f"  <StatusDescription>{description}</StatusDescription>\n"
        f"  <PagesSubmitted>{pages}</PagesSubmitted>\n  <PagesSent>{sent}</PagesSent>\n"
        f"  <Subject>{subject or 'Fax to ' + number}</Subject>\n"
        f"  <Destination>{number}</Destination>\n"
        "  <Duration>57</Duration>\n  <CompletionTime>2026-11-30T08:59:12Z</CompletionTime>\n"
        "</FaxConfirmation>\n", subtype="xml")
    return message.as_bytes()


def free_text(text: str, *, in_reply_to: str = "") -> bytes:
    """A service that reports in a sentence (matched by [service] confirm_* rules)."""
    message = _base("Fax status", "noreply@faxservice.example", in_reply_to=in_reply_to)
    message.set_content(text)
    return message.as_bytes()


def out_of_office(message_id: str) -> bytes:
    """An automatic reply to the fax email (RFC 3834), which must not count as a report."""
    message = _base("Automatische Antwort: Fax", "someone@fax.example.net",
                    in_reply_to=message_id)
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("I am out of the office until Monday. Your fax was delivered to my "
                        "inbox and I will read it then.")
    return message.as_bytes()


def newsletter() -> bytes:
    """A mailing that names delivery and failure, and is no report."""
    message = _base("Our fax service news: 99.9% delivered!", "news@faxservice.example")
    message["List-Unsubscribe"] = "<mailto:unsubscribe@faxservice.example>"
    message["Precedence"] = "bulk"
    message.set_content("Your fax was delivered successfully 1,000,000 times this year. "
                        "Busy lines? No answer? We redial.")
    return message.as_bytes()
