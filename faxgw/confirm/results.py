"""A fax service's result in words, to a status code: one table, searched in order.

Services name the same few outcomes in their reports (busy, no answer, a voice line, a bad
number, pages missing). Used for the description beside a structured report's status and by
no other rule: free-text reports go through ``[service] confirm_success``/``confirm_failure``.
"""

from __future__ import annotations

import re

from ..domain import codes

RESULT_WORDS: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), code) for pattern, code in (
        (r"\bpartial|\bincomplete|pages? missing", codes.REMOTE_PARTIAL),
        (r"\bbusy\b|\bengaged\b", codes.REMOTE_BUSY),
        (r"no answer|not answer|no response|ring\W*no\W*answer|timed? ?out",
         codes.REMOTE_NO_ANSWER),
        (r"not a fax|no fax (tone|machine)|voice|human|answering machine",
         codes.REMOTE_NOT_FAX),
        (r"invalid (fax )?number|number (is )?(invalid|incorrect|not valid)|not in service|"
         r"unallocated|disconnected|does not exist", codes.REMOTE_INVALID_NUMBER),
    ))


def code_for(description: str) -> int:
    """The code for a failure described as ``description`` (543 when nothing fits)."""
    for pattern, code in RESULT_WORDS:
        if pattern.search(description):
            return code
    return codes.REMOTE_REJECTED
