"""The engine: rounds of claiming and sending (worker, sessions), getting jobs ready ahead of
the sessions (preparer, render pool), recording outcomes, pacing and paused accounts, and the
scheduler that wakes it. It is handed its parts through the ports and never picks an adapter.
"""
