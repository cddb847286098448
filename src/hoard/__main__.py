"""``python -m hoard``: the same as the ``hoard`` executable."""

from hoard.cli.main import main

main()
