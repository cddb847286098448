"""The retention rules of ``prune`` (Borg 1.4's ``prune_within`` / ``prune_split``).

Each case is a table: archives (name, local start time), rules, now, and
the archives kept with the rule that keeps each ("daily #2", as ``--list``
says). Times are local wall-clock times in the zone given, since Borg
applies the rules on local time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from hoard.archive.prune import (
    PruneCandidate,
    PruneRules,
    parse_interval,
    plan_prune,
)
from hoard.errors import InputError

BERLIN = ZoneInfo("Europe/Berlin")


def candidate(name: str, when: datetime) -> PruneCandidate:
    return PruneCandidate(id=name.encode(), name=name, time=when, checkpoint=".checkpoint" in name)


def local(text: str, tz: tzinfo = UTC) -> datetime:
    """``2015-12-31 10:00`` (or with seconds) as an aware time in ``tz``."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def kept(
    archives: list[PruneCandidate], rules: PruneRules, now: datetime, tz: tzinfo
) -> dict[str, str]:
    plan = plan_prune(archives, rules, now, tz)
    return {
        d.archive.name: ("checkpoint" if d.rule is None else f"{d.rule} #{d.number}")
        for d in plan.decisions
        if d.keep
    }


# --- Borg's docs/misc/prune-example.txt -------------------------------------------------------


def test_borg_prune_example() -> None:
    """Backups daily in 2015 but 2015-12-19, now 2016-01-01:
    ``--keep-daily 14 --keep-monthly 6 --keep-yearly 1``."""
    days = [date(2015, 1, 1) + timedelta(days=n) for n in range(365)]
    archives = [
        candidate(d.isoformat(), local(f"{d.isoformat()} 10:00"))
        for d in days
        if d != date(2015, 12, 19)
    ]
    rules = PruneRules(daily=14, monthly=6, yearly=1)
    daily = ["31", "30", "29", "28", "27", "26", "25", "24", "23", "22", "21", "20", "18", "17"]
    expected = {f"2015-12-{d}": f"daily #{i}" for i, d in enumerate(daily, 1)}
    monthly = ["11-30", "10-31", "09-30", "08-31", "07-31", "06-30"]
    expected |= {f"2015-{d}": f"monthly #{i}" for i, d in enumerate(monthly, 1)}
    expected["2015-01-01"] = "yearly[oldest] #1"
    assert kept(archives, rules, local("2016-01-01 00:00"), UTC) == expected


# --- the rules, table-driven ------------------------------------------------------------------


@dataclass
class Case:
    id: str
    archives: list[tuple[str, str]]
    rules: PruneRules
    expected: dict[str, str]
    now: str = "2024-01-01 00:00"
    tz: tzinfo = UTC
    times: dict[str, datetime] = field(default_factory=dict)
    """Archives given as aware times (another zone) instead of local text."""


CASES = [
    Case(
        "keep-last is secondly: the newest N",
        [("a1", "2023-06-01 10:00"), ("a2", "2023-06-01 11:00"), ("a3", "2023-06-01 12:00")],
        PruneRules(secondly=2),
        {"a3": "secondly #1", "a2": "secondly #2"},
    ),
    Case(
        "two archives in one second count once",
        [
            ("a", "2023-06-01 10:00:05"),
            ("b", "2023-06-01 10:00:05.900000"),
            ("c", "2023-06-01 10:00:04"),
        ],
        PruneRules(secondly=2),
        {"b": "secondly #1", "c": "secondly #2"},
    ),
    Case(
        "several archives in one day: the newest of each day",
        [
            ("mon-1", "2023-06-05 01:00"),
            ("mon-2", "2023-06-05 23:59:59"),
            ("tue-1", "2023-06-06 00:00"),
            ("tue-2", "2023-06-06 12:00"),
            ("wed-1", "2023-06-07 08:00"),
        ],
        PruneRules(daily=2),
        {"wed-1": "daily #1", "tue-2": "daily #2"},
    ),
    Case(
        "several archives in one hour and minute",
        [
            ("a", "2023-06-05 10:00:01"),
            ("b", "2023-06-05 10:00:59"),
            ("c", "2023-06-05 10:59:00"),
            ("d", "2023-06-05 11:00:00"),
        ],
        PruneRules(minutely=1, hourly=2),
        {"d": "minutely #1", "c": "hourly #1", "a": "hourly[oldest] #2"},
    ),
    Case(
        "an unfilled rule keeps the oldest archive",
        [("a", "2023-06-01 10:00"), ("b", "2023-06-02 10:00"), ("c", "2023-06-03 10:00")],
        PruneRules(daily=1, monthly=3),
        {"c": "daily #1", "a": "monthly[oldest] #1"},
    ),
    Case(
        "no [oldest] when the oldest is kept already",
        [("a", "2023-06-01 10:00"), ("b", "2023-06-02 10:00")],
        PruneRules(daily=5),
        {"b": "daily #1", "a": "daily #2"},
    ),
    Case(
        "no [oldest] when the rule is filled",
        [("a", "2023-06-01 10:00"), ("b", "2023-06-02 10:00"), ("c", "2023-06-03 10:00")],
        PruneRules(daily=2),
        {"c": "daily #1", "b": "daily #2"},
    ),
    Case(
        "a negative number is no limit (and no [oldest])",
        [("a", "2023-06-01 10:00"), ("a2", "2023-06-01 11:00"), ("b", "2023-07-02 10:00")],
        PruneRules(monthly=-1),
        {"b": "monthly #1", "a2": "monthly #2"},
    ),
    Case(
        "an archive kept by an earlier rule does not count, its period is still seen",
        [
            ("may", "2023-05-20 10:00"),
            ("jun-1", "2023-06-01 10:00"),
            ("jun-2", "2023-06-02 10:00"),
            ("jun-3", "2023-06-03 10:00"),
        ],
        PruneRules(daily=1, monthly=1),
        {"jun-3": "daily #1", "may": "monthly #1"},
    ),
    Case(
        "keep-within is strictly newer than now - interval, and does not count for other rules",
        [
            ("old", "2023-12-25 10:00"),
            ("edge", "2023-12-30 00:00"),
            ("in-1", "2023-12-30 00:00:01"),
            ("in-2", "2023-12-31 10:00"),
        ],
        PruneRules(within_hours=48, daily=1),
        {"in-2": "within #1", "in-1": "within #2", "old": "daily #1"},
    ),
    Case(
        "weeks are ISO weeks: Thu 2020-12-31 and Sun 2021-01-03 share week 2020-53",
        [("thu", "2020-12-31 10:00"), ("sun", "2021-01-03 10:00"), ("mon", "2021-01-04 10:00")],
        PruneRules(weekly=2),
        {"mon": "weekly #1", "sun": "weekly #2"},
    ),
    Case(
        "yearly: the newest of each year",
        [("y1", "2021-03-01 10:00"), ("y2a", "2022-01-01 10:00"), ("y2b", "2022-12-31 10:00")],
        PruneRules(yearly=2),
        {"y2b": "yearly #1", "y1": "yearly #2"},
    ),
    Case(
        "3monthly: calendar quarters (Mar 31 and Apr 1 differ)",
        [("q1", "2023-03-31 10:00"), ("q2a", "2023-04-01 10:00"), ("q2b", "2023-06-30 10:00")],
        PruneRules(quarterly_3monthly=2),
        {"q2b": "quarterly_3monthly #1", "q1": "quarterly_3monthly #2"},
    ),
    Case(
        "13weekly: ISO weeks 1-13 are one quarter (Jan 2 2022 is in week 2021-52)",
        [
            ("w52", "2022-01-02 10:00"),
            ("w1", "2022-01-03 10:00"),
            ("w13", "2022-04-03 10:00"),
            ("w14", "2022-04-04 10:00"),
        ],
        PruneRules(quarterly_13weekly=3),
        {
            "w14": "quarterly_13weekly #1",
            "w13": "quarterly_13weekly #2",
            "w52": "quarterly_13weekly #3",
        },
    ),
    Case(
        "13weekly: week 53 belongs to the fourth quarter",
        [("w39", "2020-09-21 10:00"), ("w40", "2020-09-28 10:00"), ("w53", "2020-12-28 10:00")],
        PruneRules(quarterly_13weekly=2),
        {"w53": "quarterly_13weekly #1", "w39": "quarterly_13weekly #2"},
    ),
    Case(
        "checkpoints do not count; the newest one is kept while it is the newest archive",
        [
            ("a1", "2023-06-01 10:00"),
            ("a1.checkpoint", "2023-06-01 11:00"),
            ("a2", "2023-06-02 10:00"),
            ("a3.checkpoint", "2023-06-03 10:00"),
            ("a3.checkpoint.1", "2023-06-03 11:00"),
        ],
        PruneRules(secondly=1),
        {"a3.checkpoint.1": "checkpoint", "a2": "secondly #1"},
    ),
    Case(
        "a checkpoint older than a normal archive is pruned",
        [("a1.checkpoint", "2023-06-01 11:00"), ("a2", "2023-06-02 10:00")],
        PruneRules(daily=7),
        {"a2": "daily #1"},
    ),
    Case(
        "nothing to prune",
        [],
        PruneRules(daily=7),
        {},
    ),
    # --- DST (Europe/Berlin): the rules see the local clock --------------------------
    Case(
        "fall back: 02:30 CEST and 02:30 CET are one local hour",
        [],
        PruneRules(hourly=2),
        {"cet-0230": "hourly #1", "cest-0159": "hourly #2"},
        tz=BERLIN,
        times={
            "cest-0159": datetime(2020, 10, 24, 23, 59, tzinfo=UTC),  # 01:59 CEST
            "cest-0230": datetime(2020, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
            "cet-0230": datetime(2020, 10, 25, 1, 30, tzinfo=UTC),  # 02:30 CET
        },
    ),
    Case(
        "spring forward: 01:30 CET and 03:30 CEST are one hour apart yet two hours",
        [],
        PruneRules(hourly=2),
        {"cest-0330": "hourly #1", "cet-0130": "hourly #2"},
        tz=BERLIN,
        times={
            "cet-0130": datetime(2020, 3, 29, 0, 30, tzinfo=UTC),
            "cest-0330": datetime(2020, 3, 29, 1, 30, tzinfo=UTC),
        },
    ),
    Case(
        "the local date decides the day, not the UTC date",
        [],
        PruneRules(daily=2),
        {"sun-0030": "daily #1", "sat-2330": "daily #2"},
        tz=BERLIN,
        times={
            "sat-2200": datetime(2020, 10, 24, 20, 0, tzinfo=UTC),  # Sat 22:00 CEST
            "sat-2330": datetime(2020, 10, 24, 21, 30, tzinfo=UTC),  # Sat 23:30 CEST
            "sun-0030": datetime(2020, 10, 24, 22, 30, tzinfo=UTC),  # Sun 00:30 CEST, Sat in UTC
        },
    ),
    Case(
        "a DST day has 25 hours and is still one day",
        [],
        PruneRules(daily=2),
        {"late": "daily #1", "sat": "daily #2"},
        tz=BERLIN,
        times={
            "sat": datetime(2020, 10, 24, 21, 0, tzinfo=UTC),  # Sat 23:00 CEST
            "early": datetime(2020, 10, 24, 22, 0, tzinfo=UTC),  # Sun 00:00 CEST
            "late": datetime(2020, 10, 25, 22, 59, tzinfo=UTC),  # Sun 23:59 CET
        },
    ),
    # --- archives made in several time zones -------------------------------------------
    Case(
        "archives from other zones are judged by the local (Berlin) calendar",
        [],
        PruneRules(daily=3),
        {"tokyo-jun2": "daily #1", "berlin-jun1": "daily #2"},
        tz=BERLIN,
        times={
            # June 1 23:30 in New York is June 2 05:30 in Berlin
            "newyork-jun1": datetime(2023, 6, 1, 23, 30, tzinfo=ZoneInfo("America/New_York")),
            # June 2 20:00 in Tokyo is June 2 13:00 in Berlin: the same Berlin day, newer
            "tokyo-jun2": datetime(2023, 6, 2, 20, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
            "berlin-jun1": datetime(2023, 6, 1, 12, 0, tzinfo=BERLIN),
        },
    ),
    Case(
        "the same instant from two zones is one second",
        [],
        PruneRules(secondly=5),
        {"utc": "secondly #1", "later": "secondly #2"},
        tz=BERLIN,
        times={
            "tokyo": datetime(2023, 6, 2, 21, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
            "utc": datetime(2023, 6, 2, 12, 0, tzinfo=UTC),
            "later": datetime(2023, 6, 2, 11, 0, tzinfo=UTC),
        },
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rules(case: Case) -> None:
    archives = [candidate(name, local(text, case.tz)) for name, text in case.archives]
    archives += [candidate(name, when) for name, when in case.times.items()]
    assert kept(archives, case.rules, local(case.now, case.tz), case.tz) == case.expected


def test_decisions_are_newest_first_and_counted() -> None:
    archives = [
        candidate("a1", local("2023-06-01 10:00")),
        candidate("a2", local("2023-06-02 10:00")),
        candidate("a2.checkpoint", local("2023-06-02 09:00")),
        candidate("a3.checkpoint", local("2023-06-03 10:00")),
    ]
    plan = plan_prune(archives, PruneRules(daily=1), local("2023-06-04 00:00"), UTC)
    assert [d.archive.name for d in plan.decisions] == [
        "a3.checkpoint",
        "a2",
        "a2.checkpoint",
        "a1",
    ]
    assert [a.name for a in plan.to_delete] == ["a2.checkpoint", "a1"]
    assert (plan.archives, plan.checkpoints) == (2, 2)
    assert plan.count(keep=True, checkpoint=False) == 1
    assert plan.count(keep=True, checkpoint=True) == 1
    assert plan.count(keep=False, checkpoint=False) == 1
    assert plan.count(keep=False, checkpoint=True) == 1


def test_equal_times_keep_borg_order() -> None:
    """Borg sorts by time and reverses: of equal times, the one listed last counts as newest."""
    when = local("2023-06-01 10:00")
    archives = [candidate("first", when), candidate("second", when)]
    plan = plan_prune(archives, PruneRules(secondly=1), when, UTC)
    assert [(d.archive.name, d.keep) for d in plan.decisions] == [
        ("second", True),
        ("first", False),
    ]


def test_rules_given() -> None:
    assert not PruneRules().any()
    assert PruneRules(within_hours=1).any()
    assert PruneRules(yearly=-1).any()


@pytest.mark.parametrize(
    ("text", "hours"),
    [("1H", 1), ("2d", 48), ("1w", 168), ("1m", 744), ("1y", 8760), ("10d", 240)],
)
def test_parse_interval(text: str, hours: int) -> None:
    assert parse_interval(text) == hours


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "Unexpected interval time unit \"5\": expected one of ['H', 'd', 'w', 'm', 'y']"),
        ("foo", "Unexpected interval time unit \"o\": expected one of ['H', 'd', 'w', 'm', 'y']"),
        ("1h", "Unexpected interval time unit \"h\": expected one of ['H', 'd', 'w', 'm', 'y']"),
        ("food", 'Unexpected interval number "foo": expected an integer greater than 0'),
        ("0d", 'Unexpected interval number "0": expected an integer greater than 0'),
        ("-1d", 'Unexpected interval number "-1": expected an integer greater than 0'),
        ("d", 'Unexpected interval number "": expected an integer greater than 0'),
    ],
)
def test_parse_interval_errors(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_interval(text)
    assert info.value.get_message() == message
