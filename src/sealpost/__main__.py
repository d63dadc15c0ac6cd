"""``python -m sealpost``: the same as the ``sealpost`` command."""

from sealpost.cli import main

main()
