"""Borg's size syntax for ``--storage-quota`` (``init`` and ``serve``).

Apart from ``init`` so that ``hoard serve``, which starts for every ssh
connection, does not import the repository-opening machinery for it.
"""

from __future__ import annotations

import argparse

MIN_QUOTA = 10 * 10**6
"""Borg refuses quotas below 10M: a repository needs room for its own bookkeeping."""


def parse_quota(text: str) -> int:
    """Borg's size syntax for --storage-quota: 500M, 1.5G, 2T (decimal units), at least 10M."""
    units = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
    number, unit = text.upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        quota = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 500M, 2T)") from None
    if quota < MIN_QUOTA:
        raise argparse.ArgumentTypeError(f"quota is too small ({text}). At least 10M are required.")
    return quota
