"""Borg 1.4's retention rules (``prune``), as a pure function of (archives, rules, now).

:func:`plan_prune` decides which archives ``hoard prune`` keeps and why,
exactly as Borg 1.4's ``do_prune`` with ``prune_within`` / ``prune_split``
(``borg/helpers/misc.py``) does; the command only deletes what it says.

What Borg does, and so this module:

- Checkpoint archives never count towards a rule. The newest checkpoint is
  kept only while no normal archive is newer (the backup it belongs to may
  still be resumed); every other checkpoint is pruned.
- The archives are taken newest first (start time). ``--keep-within`` keeps
  every archive strictly newer than ``now - interval``. Then the period rules
  run in the fixed order secondly, minutely, hourly, daily, weekly (ISO
  weeks, Monday to Sunday), monthly, 13weekly, 3monthly, yearly: each keeps
  the newest archive of each period, until it has kept N; an archive an
  earlier rule kept is not kept again, yet its period still counts as seen
  (the next archive of the same period is not taken). A negative N is no
  limit.
- A rule that runs out of archives before it has kept N keeps the oldest
  archive as ``<rule>[oldest]`` (Borg >= 1.2), unless another rule kept it.
- Periods are computed on local wall-clock time, to the second, as Borg's
  ``to_localtime`` does: at a DST change both 02:30 (CEST and CET) are in
  the same hour, and an archive made in another time zone is judged by the
  local clock of the machine running prune.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from hoard.errors import InputError

RULES = (
    "secondly",
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly_13weekly",
    "quarterly_3monthly",
    "yearly",
)
"""The period rules in the order Borg applies them (its ``PRUNING_PATTERNS``)."""

INTERVAL_HOURS = {"H": 1, "d": 24, "w": 24 * 7, "m": 24 * 31, "y": 24 * 365}
"""``--keep-within`` units: a month is 31 days, a year 365 days (Borg)."""


@dataclass(frozen=True)
class PruneRules:
    """How many archives each rule keeps (0: rule not used; negative: no limit)."""

    within_hours: int | None = None
    secondly: int = 0
    minutely: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    quarterly_13weekly: int = 0
    quarterly_3monthly: int = 0
    yearly: int = 0

    def any(self) -> bool:
        """True if some rule is given (Borg refuses to prune without one)."""
        return bool(self.within_hours) or any(getattr(self, r) for r in RULES)


@dataclass(frozen=True)
class PruneCandidate:
    """An archive as prune sees it: identity, name, start time (aware), checkpoint or not."""

    id: bytes
    name: str
    time: datetime
    checkpoint: bool = False


@dataclass(frozen=True)
class Decision:
    """What happens to one archive.

    ``rule`` is the rule that keeps it (``daily``, ``within``,
    ``monthly[oldest]``) and ``number`` how many archives that rule had kept
    with it (Borg's "rule: daily #2"); both None for a kept checkpoint and
    for an archive to prune.
    """

    archive: PruneCandidate
    keep: bool
    rule: str | None = None
    number: int | None = None


@dataclass(frozen=True)
class PrunePlan:
    """The decisions, newest archive first (the order Borg lists and deletes in)."""

    decisions: list[Decision]

    @property
    def archives(self) -> int:
        """Normal archives the rules were applied to."""
        return sum(1 for d in self.decisions if not d.archive.checkpoint)

    @property
    def checkpoints(self) -> int:
        return sum(1 for d in self.decisions if d.archive.checkpoint)

    def count(self, *, keep: bool, checkpoint: bool) -> int:
        return sum(
            1 for d in self.decisions if d.keep is keep and d.archive.checkpoint is checkpoint
        )

    @property
    def to_delete(self) -> list[PruneCandidate]:
        return [d.archive for d in self.decisions if not d.keep]


def parse_interval(text: str) -> int:
    """``--keep-within``: ``<int><unit>`` to hours, with Borg's two error messages."""
    if not text or text[-1] not in INTERVAL_HOURS:
        units = sorted(INTERVAL_HOURS, key=INTERVAL_HOURS.__getitem__)
        last = text[-1] if text else ""
        raise InputError(f'Unexpected interval time unit "{last}": expected one of {units!r}')
    number = text[:-1]
    try:
        hours = int(number) * INTERVAL_HOURS[text[-1]]
    except ValueError:
        hours = -1
    if hours <= 0:
        raise InputError(
            f'Unexpected interval number "{number}": expected an integer greater than 0'
        )
    return hours


def plan_prune(
    archives: Sequence[PruneCandidate],
    rules: PruneRules,
    now: datetime,
    tz: tzinfo | None = None,
) -> PrunePlan:
    """Decide, as Borg 1.4 does, which archives to keep; ``tz`` None is the local zone.

    ``archives`` are those the archive filter matched, checkpoints included;
    ``now`` is aware. Archives with equal start times keep their relative
    order reversed (Borg sorts its manifest list by time and reverses it),
    so pass them oldest first.
    """
    ordered = _newest_first(archives)
    normal = [a for a in ordered if not a.checkpoint]
    kept: dict[bytes, tuple[str, int]] = {}
    if rules.within_hours:
        _keep_within(normal, now - timedelta(hours=rules.within_hours), kept)
    for rule in RULES:
        count: int = getattr(rules, rule)
        if count:
            _keep_by_period(normal, rule, count, _period_function(rule, tz), kept)
    newest_checkpoint = ordered[0].id if ordered and ordered[0].checkpoint else None
    decisions = []
    for archive in ordered:
        if archive.checkpoint:
            decisions.append(Decision(archive, keep=archive.id == newest_checkpoint))
        elif archive.id in kept:
            rule, number = kept[archive.id]
            decisions.append(Decision(archive, keep=True, rule=rule, number=number))
        else:
            decisions.append(Decision(archive, keep=False))
    return PrunePlan(decisions)


def _newest_first(archives: Sequence[PruneCandidate]) -> list[PruneCandidate]:
    """Borg: ``sort_by=['ts'], reverse=True`` (a stable sort, then reversed)."""
    ordered = sorted(archives, key=lambda a: a.time)
    ordered.reverse()
    return ordered


def _keep_within(
    archives: list[PruneCandidate], limit: datetime, kept: dict[bytes, tuple[str, int]]
) -> None:
    number = 0
    for archive in archives:
        if archive.time > limit:
            number += 1
            kept[archive.id] = ("within", number)


def _keep_by_period(
    archives: list[PruneCandidate],
    rule: str,
    count: int,
    period: Callable[[PruneCandidate], object],
    kept: dict[bytes, tuple[str, int]],
) -> None:
    """Borg's ``prune_split``: the newest archive of each period, ``count`` of them."""
    last: object = None
    taken = 0
    for archive in archives:
        current = period(archive)
        if current == last:
            continue
        last = current
        if archive.id not in kept:
            taken += 1
            kept[archive.id] = (rule, taken)
            if taken == count:
                return
    oldest = archives[-1] if archives else None
    if oldest is not None and taken < count and oldest.id not in kept:
        kept[oldest.id] = (f"{rule}[oldest]", taken + 1)


def local_wall_time(time: datetime, tz: tzinfo | None) -> datetime:
    """The naive local clock reading of ``time``, to the second (Borg's ``to_localtime``)."""
    return time.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _period_function(rule: str, tz: tzinfo | None) -> Callable[[PruneCandidate], object]:
    formats = {
        "secondly": "%Y-%m-%d %H:%M:%S",
        "minutely": "%Y-%m-%d %H:%M",
        "hourly": "%Y-%m-%d %H",
        "daily": "%Y-%m-%d",
        "weekly": "%G-%V",
        "monthly": "%Y-%m",
        "yearly": "%Y",
    }
    if rule == "quarterly_13weekly":
        return lambda a: _quarter_13weekly(local_wall_time(a.time, tz))
    if rule == "quarterly_3monthly":
        return lambda a: (local_wall_time(a.time, tz).year, _quarter(local_wall_time(a.time, tz)))
    pattern = formats[rule]
    return lambda a: local_wall_time(a.time, tz).strftime(pattern)


def _quarter_13weekly(local: datetime) -> tuple[int, int]:
    """Quarters of 13 ISO weeks (1-13, 14-26, 27-39, 40-53) of the ISO year."""
    year, week, _ = local.isocalendar()
    return (year, min((week - 1) // 13 + 1, 4))


def _quarter(local: datetime) -> int:
    return (local.month - 1) // 3 + 1
