"""Intake: how faxes come in. The spool's drop folders and ``faxgw submit`` now; an SMTP
listener for devices next. Every path ends in :func:`~faxgw.intake.register.register`."""
