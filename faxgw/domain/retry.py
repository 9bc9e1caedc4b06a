"""When a job that could not be sent is tried again, and when it is given up (pure).

These rules are the same whatever store keeps the job and whatever transport sends it, so
they live here, above both: the engine applies them and hands the store only the results.

- The n-th failure waits ``backoff[n-1]`` seconds (the last step repeats), moved by up to
  ``jitter`` either way so that a whole queue never retries at one instant (Postfix's
  QSHAPE_README warns of such stampedes); a wait the server's answer implies (a daily quota)
  replaces the step.
- After ``max_attempts`` attempts, or ``max_age`` seconds of trying, the job expires.
- Time spent waiting for the account (a sign-in, a full mailbox) counts towards neither: the
  job's age starts later by that much when it is next claimed.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from .jobs import Job


def backoff_seconds(attempts: int, backoff: Sequence[float], jitter: float, rng: random.Random,
                    *, retry_after: float | None = None) -> float:
    """The wait after the ``attempts``-th failed attempt (1 for the first), jitter applied."""
    step = retry_after or backoff[min(max(attempts, 1) - 1, len(backoff) - 1)]
    return step * (1 + rng.uniform(-jitter, jitter))


def expiry_reason(job: Job, attempts: int, now: datetime, *, max_attempts: int,
                  max_age: float) -> str | None:
    """Why the job is given up after its ``attempts``-th attempt ("10 attempts",
    "24.0 hours"), or None while it may be tried again."""
    if attempts >= max_attempts:
        return f"{attempts} attempts"
    age = job.age_seconds(now)
    if age >= max_age:
        return f"{age / 3600:.1f} hours"
    return None


def age_from_after_wait(job: Job, now: datetime) -> datetime:
    """Where the job's age counts from once it stops waiting for its account at ``now``:
    moved forward by the time it waited."""
    start = job.age_from or job.created
    if job.paused_since is None:
        return start
    waited = max(now, job.paused_since) - job.paused_since
    return start + waited


def jittered(seconds: float, jitter: float, rng: random.Random) -> timedelta:
    """``seconds`` moved by up to ``jitter`` either way."""
    return timedelta(seconds=seconds * (1 + rng.uniform(-jitter, jitter)))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """An HTTP ``Retry-After`` in seconds: a number, or a date (counted from ``now``);
    None when missing, zero, past or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value) or None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return seconds if seconds > 0 else None
