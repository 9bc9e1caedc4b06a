"""The web console: pages for people (log in, the email server and its sign-in, the job log,
sending a fax, the codes; "Send as me" for people faxing from their own mailbox), a JSON API
for programs (bearer tokens), and health and metrics for operations. A face over the use
cases in :mod:`faxgw.app`, like the command line.

:func:`faxgw.web.server.serve` runs it in an asyncio loop (``faxgw web``; ``faxgw run`` beside
the worker when ``[web] listen`` is set); :func:`faxgw.web.routes.create_app` is the ASGI app.
"""
