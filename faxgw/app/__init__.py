"""The use cases: what a person or a program can ask of the gateway, whatever the face.

The command line calls only these (the web console will call the same): ``submit``,
``preview``, ``control`` (cancel, retry, hold, release), ``queries`` (jobs, one job, codes,
the status sheet, profiles), ``signin``, ``service`` (run once, or as a service), ``demo``.
:mod:`faxgw.app.wiring` is the one place that builds adapters from the configuration.
"""
