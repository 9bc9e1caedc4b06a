"""``python -m faxgw``: the same as the ``faxgw`` command."""

from .cli import main

main()
