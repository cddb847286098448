"""The archive record's encoding: what newer hoards add, older records lack."""

from __future__ import annotations

from hoard.archive.items import packb, unpackb
from hoard.archive.record import ArchiveRecord


def _record(**changes: object) -> ArchiveRecord:
    values: dict[str, object] = {
        "name": "a",
        "time": 1,
        "end": 2,
        "hostname": "h",
        "username": "u",
        "root": [b"\x01" * 32],
    }
    values.update(changes)
    return ArchiveRecord(**values)  # type: ignore[arg-type]


def test_round_trip_keeps_the_working_directory() -> None:
    record = _record(cwd="/home/u", cmdline=["hoard", "create"])
    back = ArchiveRecord.decode(record.encode(), b"id")
    assert (back.cwd, back.cmdline, back.id) == ("/home/u", ["hoard", "create"], b"id")


def test_a_record_from_before_cwd_decodes_with_an_empty_one() -> None:
    fields = unpackb(_record(cwd="/x").encode(), "test")
    del fields["cwd"]
    assert ArchiveRecord.decode(packb(fields), b"id").cwd == ""
