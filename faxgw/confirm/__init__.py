"""Reading what comes back: fax-service confirmations and mail-server bounces.

:func:`~faxgw.confirm.classify.classify` reads one message into a
:class:`~faxgw.domain.reports.Finding` (pure: no I/O); :mod:`~faxgw.confirm.correlate` ties a
finding to its job. The parsers are data: which ones apply is the service profile's
``reports`` and ``[service] confirm_success`` / ``confirm_failure``.
"""
