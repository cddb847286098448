"""``hoard change-passphrase REPOSITORY``: the old spelling of ``key change-passphrase``."""

from __future__ import annotations

from hoard.commands.key import (
    CHANGE_DESCRIPTION,
    configure_change_passphrase,
    run_change_passphrase,
)

NAME = "change-passphrase"
HELP = "change repository passphrase"
DESCRIPTION = CHANGE_DESCRIPTION + "\n\nThe same as 'hoard key change-passphrase'."

configure = configure_change_passphrase
run = run_change_passphrase
