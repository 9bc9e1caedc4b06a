"""Tying a report to its job, best handle first.

1. faxgw's Message-ID (``<faxgw.<job id>@…>``) in ``In-Reply-To``/``References`` or in the
   original a bounce returns; 2. ``X-Faxgw-Job`` in those returned headers; 3. the DSN's
   ``Original-Envelope-Id``; 4. the job's token in the subject the report repeats
   (``[faxgw 9f3b2a71]``); 5. the fax number and the time, when exactly one job to that
   number awaits a report (a guess: recorded as ``number-time`` so that it can be told apart).
A report about one of faxgw's notifications is never tied to a job (no loops).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..domain.reports import ENVELOPE_PREFIX, Finding, MatchedBy
from .mail import clean_job_id, is_notification_id, job_of_message_id


def about_notification(finding: Finding) -> bool:
    """Whether the report refers to one of faxgw's notifications."""
    return any(is_notification_id(mid) for mid in finding.message_ids)


def digits(number: str) -> str:
    """A number's digits, for comparing a report's number with a job's."""
    return "".join(c for c in number if c.isdigit())


def correlate(finding: Finding, *, exists: Callable[[str], bool],
              awaiting: Callable[[str], Sequence[str]],
              by_token: Callable[[str], Sequence[str]] = lambda token: ()
              ) -> tuple[str | None, MatchedBy]:
    """The job ``finding`` is about and how it was found; ``(None, MatchedBy.NONE)``.

    ``exists(job_id)`` says whether a job is stored; ``awaiting(digits)`` lists the jobs to
    that number that await a report; ``by_token(token)`` the jobs awaiting a report whose
    id ends in the token.
    """
    if about_notification(finding):
        return None, MatchedBy.NONE
    for message_id in finding.message_ids:
        job_id = job_of_message_id(message_id)
        if job_id and exists(job_id):
            return job_id, MatchedBy.MESSAGE_ID
    for value in finding.job_ids:
        job_id = clean_job_id(value)
        if job_id and exists(job_id):
            return job_id, MatchedBy.JOB_HEADER
    if finding.envelope_id.startswith(ENVELOPE_PREFIX):
        job_id = clean_job_id(finding.envelope_id[len(ENVELOPE_PREFIX):])
        if job_id and exists(job_id):
            return job_id, MatchedBy.ENVELOPE_ID
    for token in finding.tokens:
        candidates = list(by_token(token))
        if len(candidates) == 1:
            return candidates[0], MatchedBy.SUBJECT_TOKEN
    number = digits(finding.number)
    if len(number) >= 5:
        candidates = list(awaiting(number))
        if len(candidates) == 1:
            return candidates[0], MatchedBy.NUMBER_TIME
    return None, MatchedBy.NONE
