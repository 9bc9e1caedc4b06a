"""Job status codes: one table, each code with a short status and a solution.

The numbers are faxgw's own and stable: scripts rely on them. 360, 361 and 370 keep the
meaning printer vendors give them for a device that sends email through a cloud mail service.
They are not SMTP reply codes; the server's own reply is kept beside them in the job history.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StatusCode:
    """A job status code with the words a printer administrator needs."""

    code: int
    name: str
    status: str
    solution: str
    #: True when the job is finished badly with this code (as opposed to waiting).
    failure: bool = True
    #: For a result the fax service reports: dial again with the backoff (busy, no answer)
    #: rather than fail the job.
    redial: bool = False


SENT = 100
CONFIRMED = 110
UNCONFIRMED = 120
NO_CONNECTION = 360
CONNECTION_EXPIRED = 361
SIGN_IN_AGAIN = 370
SMTP_AUTH_DISABLED = 371
SEND_AS_DENIED = 372
CONSENT_MISSING = 373
APP_REGISTRATION = 374
AUTH_REJECTED = 375
CLIENT_SECRET = 376
APP_ACCESS_POLICY = 377
MAILBOX_NOT_ON_GRAPH = 378
TRY_LATER = 380
DAILY_QUOTA = 381
MAILBOX_FULL = 382
INVALID_NUMBER = 400
NUMBER_REFUSED = 401
INPUT_REFUSED = 405
BAD_MANIFEST = 406
CONTROL_CHARACTERS = 407
SENDER_NOT_ALLOWED = 408
NOTIFY_ADDRESS = 409
DOCUMENT_UNREADABLE = 410
DOCUMENT_ENCRYPTED = 411
DOCUMENT_UNSUPPORTED = 412
INPUT_TOO_LARGE = 413
RENDER_CRASHED = 414
RENDER_TIMEOUT = 415
TOO_LARGE = 420
TOO_MANY_PAGES = 421
SUBJECT_TOO_LONG = 422
REJECTED = 500
CANCELLED = 510
EXPIRED = 520
REMOTE_BUSY = 540
REMOTE_NO_ANSWER = 541
REMOTE_NOT_FAX = 542
REMOTE_REJECTED = 543
REMOTE_PARTIAL = 544
REMOTE_INVALID_NUMBER = 545
BOUNCED = 546
INTERNAL = 590

_TABLE: tuple[StatusCode, ...] = (
    StatusCode(
        SENT,
        "sent",
        "Sent: the mail server accepted the fax email.",
        "Nothing to do. The fax service now dials the number; its own report arrives by email.",
        failure=False,
    ),
    StatusCode(
        CONFIRMED,
        "confirmed",
        "Confirmed: the fax service reports the fax delivered to the fax machine.",
        "Nothing to do. The service's report is kept with the job ('faxgw show JOB').",
        failure=False,
    ),
    StatusCode(
        UNCONFIRMED,
        "unconfirmed",
        "Sent, but no report from the fax service came within [inbox] confirm_within.",
        "Check the fax service's own log or ask the recipient. If the service sends reports "
        "to another address, point them at the sending mailbox; 'faxgw reports --unmatched' "
        "lists reports that could not be tied to a job.",
        failure=False,
    ),
    StatusCode(
        NO_CONNECTION,
        "no-connection",
        "No connection to the email service.",
        "Check the network, the [smtp] host and port, the firewall (port 587 outbound) and the "
        "certificate trust ([smtp] ca_file). The job is tried again by itself.",
        failure=False,
    ),
    StatusCode(
        CONNECTION_EXPIRED,
        "connection-expired",
        "The connection to the email service has expired.",
        "The sign-in has expired or was revoked (password change, long inactivity, policy). "
        "Run 'faxgw auth login' to sign in again; waiting jobs then go out by themselves.",
        failure=False,
    ),
    StatusCode(
        SIGN_IN_AGAIN,
        "sign-in-needed",
        "Sign in to the email service again.",
        "No usable sign-in for this mailbox. Run 'faxgw auth login' (for the job's sender: "
        "'faxgw auth login --account ADDRESS'); waiting jobs then go out by themselves.",
        failure=False,
    ),
    StatusCode(
        SMTP_AUTH_DISABLED,
        "smtp-auth-disabled",
        "The mail server does not allow SMTP sign-in for this mailbox.",
        "In the Microsoft 365 admin center, enable 'Authenticated SMTP' for the mailbox "
        "(Set-CASMailbox -SmtpClientAuthenticationDisabled $false) and check that the tenant's "
        "security defaults do not block it. Waiting jobs go out once it is enabled.",
        failure=False,
    ),
    StatusCode(
        SEND_AS_DENIED,
        "send-as-denied",
        "The signed-in mailbox may not send as this sender.",
        "Send as the signed-in mailbox ([auth] account), or grant it 'Send As' rights on the "
        "sender's mailbox in Exchange, then 'faxgw retry JOB'.",
    ),
    StatusCode(
        CONSENT_MISSING,
        "consent-missing",
        "The app has no consent to send mail for this account.",
        "An administrator signs in once with 'faxgw auth login' and accepts 'Consent on behalf "
        "of your organization', or grants admin consent for SMTP.Send in Entra ID.",
        failure=False,
    ),
    StatusCode(
        APP_REGISTRATION,
        "app-registration",
        "The app registration in Entra ID does not allow this sign-in.",
        "Check [auth] client_id and tenant; in the app registration enable 'Allow public client "
        "flows' for device code sign-in, and use a work account app with a work tenant.",
        failure=False,
    ),
    StatusCode(
        AUTH_REJECTED,
        "auth-rejected",
        "The mail server refused the user name or password.",
        "Check [auth] username and the password in [auth] password_file or FAXGW_SMTP_PASSWORD. "
        "Exchange Online no longer accepts passwords: use [auth] method = \"oauth2\".",
        failure=False,
    ),
    StatusCode(
        CLIENT_SECRET,
        "client-secret",
        "The app's client secret or certificate is wrong, expired or not registered.",
        "Create a new client secret in the app registration and put it in [auth] "
        "client_secret_file or FAXGW_CLIENT_SECRET, or upload the certificate of [auth] "
        "client_certificate_file to the app registration (Certificates & secrets).",
        failure=False,
    ),
    StatusCode(
        APP_ACCESS_POLICY,
        "app-access-policy",
        "Microsoft Graph keeps the app out of this mailbox (\"Access to OData is disabled\"): "
        "an application access policy or an RBAC for Applications scope leaves it out.",
        "An Exchange administrator adds the mailbox to the app's management scope (or access "
        "policy) and checks it with Test-ServicePrincipalAuthorization; waiting jobs then go "
        "out by themselves.",
    ),
    StatusCode(
        MAILBOX_NOT_ON_GRAPH,
        "mailbox-not-on-graph",
        "The mailbox cannot be used through Microsoft Graph (MailboxNotEnabledForRESTAPI): it "
        "is on-premises, inactive, soft-deleted or has no Exchange Online licence.",
        "Send from an Exchange Online mailbox, or use [transport] kind = \"smtp\" for this one.",
    ),
    StatusCode(
        TRY_LATER,
        "try-later",
        "The mail server asked to try again later.",
        "Nothing to do: the job is tried again by itself. If it persists, the server's reply in "
        "'faxgw show JOB' says why.",
        failure=False,
    ),
    StatusCode(
        DAILY_QUOTA,
        "daily-quota",
        "The sending mailbox has reached its daily sending limit.",
        "Nothing to do: the mailbox's jobs wait and go out when the limit allows (Exchange "
        "Online: 10,000 recipients in 24 hours). Spread large batches over several mailboxes.",
        failure=False,
    ),
    StatusCode(
        MAILBOX_FULL,
        "mailbox-full",
        "The sending mailbox is full: sent mail cannot be stored (Sent Items).",
        "Empty the mailbox's Sent Items or raise its quota (or turn off saving sent items for "
        "SMTP submissions). The mailbox's jobs wait and go out once there is room.",
        failure=False,
    ),
    StatusCode(
        INVALID_NUMBER,
        "invalid-number",
        "The fax number is not a valid telephone number.",
        "Give the number in international form (+4930123456) or set [service] region to the "
        "country of numbers written without a country code, then submit again.",
    ),
    StatusCode(
        NUMBER_REFUSED,
        "number-refused",
        "The fax number is not allowed (emergency, premium-rate, or outside [numbers] allow).",
        "Check the number. If it is right, an administrator adds its prefix to [numbers] allow "
        "or removes it from [numbers] deny.",
    ),
    StatusCode(
        INPUT_REFUSED,
        "input-refused",
        "The dropped file was refused: a link, a device file, or outside the spool.",
        "Drop ordinary files only (no symbolic or hard links). The refused entry is kept in the "
        "spool's failed area for inspection.",
    ),
    StatusCode(
        BAD_MANIFEST,
        "bad-manifest",
        "The job manifest (.fax) is unreadable or incomplete.",
        "A manifest is TOML with to = \"+49...\" and files = [\"a.pdf\", ...] naming files in "
        "the same folder. Fix it and drop it again; the original is kept in the failed area.",
    ),
    StatusCode(
        CONTROL_CHARACTERS,
        "control-characters",
        "A subject, note, sender or file name holds control characters (a line break, NUL).",
        "Give the job's subject, note, sender and file names as plain text on one line and "
        "submit again; the original is kept in the spool's failed area.",
    ),
    StatusCode(
        SENDER_NOT_ALLOWED,
        "sender-not-allowed",
        "The job names a sender that [intake] allowed_senders does not allow.",
        "Leave the sender out (the configured mailbox sends), or an administrator adds the "
        "address or its @domain to [intake] allowed_senders.",
    ),
    StatusCode(
        NOTIFY_ADDRESS, "notify-address",
        "The address to tell how the job ends (--notify, the manifest's notify) is not one "
        "email address.",
        "Give one address such as name@example.com, and submit again.",
    ),
    StatusCode(
        DOCUMENT_UNREADABLE,
        "document-unreadable",
        "A document is corrupt, truncated or empty.",
        "Open the file named in the job's error; save or scan it again and submit again. The "
        "original is kept in the spool's failed area.",
    ),
    StatusCode(
        DOCUMENT_ENCRYPTED,
        "document-encrypted",
        "A document is protected by a password.",
        "Remove the password (save an unprotected copy) and submit again.",
    ),
    StatusCode(
        DOCUMENT_UNSUPPORTED,
        "document-unsupported",
        "A document's type is not supported, or its name does not match its content.",
        "Send PDF, JPEG, PNG, TIFF, GIF, BMP or plain text (.txt), named for what they contain.",
    ),
    StatusCode(
        INPUT_TOO_LARGE,
        "input-too-large",
        "A dropped or submitted file is larger than [limits] max_input_bytes; it was not read.",
        "Send a smaller file (fewer pages, a lower scan resolution), or an administrator raises "
        "[limits] max_input_bytes.",
    ),
    StatusCode(
        RENDER_CRASHED,
        "render-crashed",
        "Rendering a document stopped its render process, twice; the document was not faxed.",
        "Open the document, save or print it to a new PDF and submit that. The original is "
        "kept in the spool's failed area.",
    ),
    StatusCode(
        RENDER_TIMEOUT,
        "render-timeout",
        "Rendering a document took longer than [limits] render_seconds, twice.",
        "Send a simpler document (fewer pages, a scan at fax resolution), or an administrator "
        "raises [limits] render_seconds.",
    ),
    StatusCode(
        TOO_LARGE,
        "too-large",
        "The fax is too large for the mail server or the fax service.",
        "Send fewer pages or lower-resolution scans, or split the fax into several jobs.",
    ),
    StatusCode(
        TOO_MANY_PAGES,
        "too-many-pages",
        "The fax has more pages than the fax service accepts.",
        "Split the fax into several jobs, each within the page limit shown in the job's error.",
    ),
    StatusCode(
        SUBJECT_TOO_LONG,
        "subject-too-long",
        "The subject is longer than the fax service accepts.",
        "Shorten the subject (--subject or the manifest's subject) to the limit in the error.",
    ),
    StatusCode(
        REJECTED,
        "rejected",
        "The mail server rejected the fax email.",
        "Read the server's reply in 'faxgw show JOB': the recipient address ([service] address), "
        "the sender ([smtp] sender) or the message was refused.",
    ),
    StatusCode(
        CANCELLED,
        "cancelled",
        "The job was cancelled.",
        "Nothing to do.",
    ),
    StatusCode(
        EXPIRED,
        "expired",
        "Gave up: the job could not be sent within its attempts or age.",
        "Read the last error in 'faxgw show JOB', fix its cause, then 'faxgw retry JOB' or "
        "submit again.",
    ),
    StatusCode(
        REMOTE_BUSY, "remote-busy", "The fax service reports the line was busy.",
        "Nothing to do: the fax is dialled again with the retry backoff.", redial=True,
    ),
    StatusCode(
        REMOTE_NO_ANSWER, "remote-no-answer", "The fax service reports no answer.",
        "Nothing to do: the fax is dialled again with the retry backoff. If it keeps failing, "
        "check that the fax machine is switched on.", redial=True,
    ),
    StatusCode(
        REMOTE_NOT_FAX, "remote-not-fax",
        "The fax service reports that a voice line or modem answered, not a fax machine.",
        "Check the fax number with the recipient, then 'faxgw retry JOB' or submit again.",
    ),
    StatusCode(
        REMOTE_REJECTED, "remote-rejected",
        "The fax service refused or could not send the fax (its report gives the reason).",
        "Read the service's report in 'faxgw show JOB' (account, credit, blocked destination); "
        "fix it with the service, then 'faxgw retry JOB'.",
    ),
    StatusCode(
        REMOTE_PARTIAL, "remote-partial",
        "The fax service reports that only some pages were transmitted.",
        "'faxgw retry JOB' sends the whole fax again; tell the recipient to expect it twice.",
    ),
    StatusCode(
        REMOTE_INVALID_NUMBER, "remote-invalid-number",
        "The fax service reports the number as invalid or not reachable.",
        "Check the number (country code, no extension) and submit again.",
    ),
    StatusCode(
        BOUNCED, "bounced",
        "The mail server could not deliver the fax email to the fax service (a bounce).",
        "Read the bounce in 'faxgw show JOB': usually the service address ([service] address) "
        "or the sending mailbox is refused by the service; fix it, then 'faxgw retry JOB'.",
    ),
    StatusCode(
        INTERNAL,
        "internal-error",
        "faxgw met an unexpected error with this job.",
        "The job and its files are kept. Report the error text in 'faxgw show JOB'.",
    ),
)

CODES: dict[int, StatusCode] = {entry.code: entry for entry in _TABLE}


def describe(code: int) -> StatusCode:
    """Return the table entry for ``code``; unknown codes raise ``KeyError``."""
    return CODES[code]


def all_codes() -> tuple[StatusCode, ...]:
    """Every status code, in numeric order."""
    return tuple(sorted(_TABLE, key=lambda entry: entry.code))
