"""``--debug-profile`` and ``--debug-topic`` (Borg's common options) do what Borg's do."""

from __future__ import annotations

import marshal
import pstats
from pathlib import Path

import msgpack

from tests.cli.conftest import Hoard


def test_debug_profile_writes_borgs_msgpack_or_a_pyprof(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    hoard("--debug-profile", tmp_path / "list.prof", "list", repo)
    stats = msgpack.unpackb(
        (tmp_path / "list.prof").read_bytes(), strict_map_key=False, use_list=False
    )
    functions = {key[2] for key in stats}
    assert "run" in functions  # the command's own run() was profiled
    hoard("list", "--debug-profile", tmp_path / "list.pyprof", repo)
    assert isinstance(marshal.loads((tmp_path / "list.pyprof").read_bytes()), dict)
    assert pstats.Stats(str(tmp_path / "list.pyprof")).total_calls > 0  # type: ignore[attr-defined]
    bad = hoard.run("--debug-profile", tmp_path / "no" / "such", "list", repo)
    assert bad.rc == 2 and "cannot write the profile" in bad.err


def test_debug_topic_enables_one_modules_debug_messages(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    hoard("init", "-e", "none", repo)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    first = hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    assert "Files cache" not in first.err
    shown = hoard(
        "create", "--debug-topic", "hoard.archive.filescache", f"{repo}::b", "src", cwd=tmp_path
    )
    assert "Files cache" in shown.err and "entries loaded." in shown.err
    assert "Checkpoint" not in shown.err  # other modules stay at the normal level
    unknown = hoard("create", "--debug-topic", "filescache", f"{repo}::c", "src", cwd=tmp_path)
    assert unknown.err == ""  # Borg's rule: a bare name is hoard.debug.<TOPIC>, none here
