"""``hoard create`` through the real executable.

Deduplication is measured on the repository directory itself; archives are
read back through hoard's Python API (``archive_entries``), so these tests
check what was stored, not what another command prints. Races (a file
vanishing, changing, a Ctrl-C) are made deterministic with a FIFO read under
``--read-special``: hoard blocks on it until the test's writer acts.
"""

from __future__ import annotations

import getpass
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from hoard.archive.catalog import find, load_records
from hoard.archive.items import Entry
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import walk
from hoard.cli.environment import Dirs
from hoard.objects.keys import EncryptionMode, KeyLocation, KeyManager
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType
from hoard.repository.repository import Repository
from hoard.storage.local import LocalStorage
from tests.cli.conftest import HOARD, Hoard, Result
from tests.cli.trees import make_big_file

MiB = 1024 * 1024
BORG14 = Path("/tmp/borg14/venv/bin/borg")
BORG_CREATE_JSON_KEYS = {
    "archive": {"command_line", "duration", "end", "id", "limits", "name", "start", "stats"},
    "archive.stats": {"compressed_size", "deduplicated_size", "nfiles", "original_size"},
    "cache": {"path", "stats"},
    "cache.stats": {
        "total_chunks",
        "total_csize",
        "total_size",
        "total_unique_chunks",
        "unique_csize",
        "unique_size",
    },
    "encryption": {"mode"},
    "repository": {"id", "last_modified", "location"},
}
"""The keys of Borg 1.4.1's ``create --json`` (observed); hoard may add, never lack."""


# --- helpers shared with test_patterns / test_errors / test_init ------------------------------


def open_store(hoard: Hoard, repo: Path) -> ObjectStore:
    """The repository's object store, unlocked the way the CLI would (Python API)."""
    repository = Repository.open(LocalStorage(repo), None)
    mode = EncryptionMode.parse(repository.config.key_mode)
    keys_dir = Dirs.from_env(hoard.env).keys if mode.location is KeyLocation.KEYFILE else None
    blob_store = repository if mode.location is KeyLocation.REPOSITORY else None
    key = KeyManager(repository.id, mode, keys_dir=keys_dir, blob_store=blob_store).load(
        lambda: hoard.env["BORG_PASSPHRASE"]
    )
    return ObjectStore(repository, key)


def archive_record(hoard: Hoard, repo: Path, name: str) -> ArchiveRecord:
    return find(load_records(open_store(hoard, repo)), name)


def archive_names(hoard: Hoard, repo: Path) -> list[str]:
    return [r.name for r in load_records(open_store(hoard, repo))]


def archive_entries(hoard: Hoard, repo: Path, name: str) -> dict[str, Entry]:
    """Every entry of archive ``name`` by path, implicit parent directories included."""
    store = open_store(hoard, repo)
    record = find(load_records(store), name)
    return {os.fsdecode(w.path): w.entry for w in walk(store, record.root)}


def archived_paths(hoard: Hoard, repo: Path, name: str) -> set[str]:
    """What ``list`` shows of an archive: its paths without implicit directories."""
    return {p for p, e in archive_entries(hoard, repo, name).items() if not e.implicit}


def data_ids(hoard: Hoard, repo: Path) -> set[bytes]:
    return set(Repository.open(LocalStorage(repo), None).list_ids(ObjectType.DATA))


def repo_size(repo: Path) -> int:
    """Bytes of all files in the repository directory (what ``du --apparent`` counts)."""
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def tree_hashes(root: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file below ``root``: "unchanged" means equal dicts."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_one_line(result: Result, rc: int, *fragments: str) -> str:
    """Exit code ``rc``, stderr exactly one non-empty line holding every fragment."""
    assert result.rc == rc, str(result)
    assert "Traceback" not in result.err, str(result)
    lines = result.err.split("\n")
    assert len(lines) == 2 and lines[0].strip() and lines[1] == "", str(result)
    for fragment in fragments:
        assert fragment in lines[0], str(result)
    return lines[0]


def list_lines(result: Result) -> list[tuple[str, str]]:
    """The ``--list`` lines of a run's stderr as (status, path)."""
    lines = []
    for line in result.err.splitlines():
        status, _, path = line.partition(" ")
        if len(status) == 1 and path:
            lines.append((status, path))
    return lines


def is_root() -> bool:
    return os.geteuid() == 0


@contextmanager
def fifo_writer(fifo: Path, action: object = None) -> Iterator[threading.Event]:
    """Feed ``fifo`` from a thread: once hoard opens it, run ``action()``, write, close.

    The yielded event is set when hoard has opened the FIFO (so the test
    knows hoard is inside the backup, blocked on this file).
    """
    opened = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as f:  # returns when the reader (hoard) opened it
            opened.set()
            if callable(action):
                action()
            f.write(b"fifo data\n")

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        thread.join(timeout=60)


# --- deduplication --------------------------------------------------------------------------


def make_tree(root: Path, files: int = 20, size: int = 512 * 1024) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        sub = root / f"d{n % 4}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{n}.bin").write_bytes(os.urandom(size))
    (root / "text.txt").write_text("hello world\n" * 10_000)
    return root


def test_same_tree_twice_adds_less_than_one_percent(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    make_tree(tmp_path / "src")
    hoard("create", f"{repo}::one", "src", cwd=tmp_path)
    first = repo_size(repo)
    assert first > 10 * MiB
    hoard("create", f"{repo}::two", "src", cwd=tmp_path)
    assert repo_size(repo) - first < first // 100
    assert archived_paths(hoard, repo, "one") == archived_paths(hoard, repo, "two")


def test_copy_under_another_name_adds_nothing(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "original.bin").write_bytes(os.urandom(8 * MiB))
    hoard("create", f"{repo}::one", "src", cwd=tmp_path)
    before, ids = repo_size(repo), data_ids(hoard, repo)
    shutil.copyfile(src / "original.bin", src / "copy.bin")
    hoard("create", f"{repo}::two", "src", cwd=tmp_path)
    assert data_ids(hoard, repo) == ids  # not one new data chunk
    assert repo_size(repo) - before < 16 * 1024  # a tree object, a record, an index file


def test_change_in_the_middle_of_a_big_file_adds_few_chunks(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = make_big_file(src / "disk.img", 200 * MiB)
    hoard("create", f"{repo}::one", "src", cwd=tmp_path)
    before, ids = repo_size(repo), data_ids(hoard, repo)
    with big.open("r+b") as f:
        f.seek(100 * MiB + 12345)
        f.write(os.urandom(64 * 1024))
    hoard("create", f"{repo}::two", "src", cwd=tmp_path)
    new_chunks = data_ids(hoard, repo) - ids
    assert 1 <= len(new_chunks) <= 3, len(new_chunks)
    assert repo_size(repo) - before < 3 * 8 * MiB


# --- output ---------------------------------------------------------------------------------


def test_stats(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=3, size=1000)
    result = hoard("create", "--stats", f"{repo}::a", "src", cwd=tmp_path)
    assert result.out == ""
    assert "Archive name: a" in result.err
    assert "Number of files: 4" in result.err
    assert "This archive:" in result.err and "All archives:" in result.err
    record = archive_record(hoard, repo, "a")
    assert f"Archive fingerprint: {record.id.hex()}" in result.err


def test_json(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=3, size=100_000)
    result = hoard("create", "--json", f"{repo}::a", "src", cwd=tmp_path)
    doc = json.loads(result.out)
    for path, keys in BORG_CREATE_JSON_KEYS.items():
        node = doc
        for part in path.split("."):
            node = node[part]
        assert keys <= set(node), (path, keys - set(node))
    record = archive_record(hoard, repo, "a")
    archive = doc["archive"]
    assert archive["name"] == "a" and archive["id"] == record.id.hex()
    assert archive["stats"]["nfiles"] == 4
    assert archive["stats"]["original_size"] == 300_000 + len("hello world\n" * 10_000)
    assert archive["command_line"][1:] == ["create", "--json", f"{repo}::a", "src"]
    assert doc["repository"]["location"] == str(repo)
    listed = json.loads(hoard("list", "--json", str(repo)).out)
    assert [a["id"] for a in listed["archives"]] == [record.id.hex()]


def test_json_keys_match_real_borg(tmp_path: Path) -> None:
    """The observed key table above is what Borg 1.4 prints (checked when Borg is here)."""
    if not BORG14.exists():
        assert BORG_CREATE_JSON_KEYS["archive"] >= {"id", "name", "stats"}
        return
    env = {**os.environ, "BORG_BASE_DIR": str(tmp_path / "bhome"), "BORG_PASSPHRASE": ""}
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("x")
    run = [str(BORG14), "init", "-e", "none", str(tmp_path / "b")]
    subprocess.run(run, env=env, check=True, capture_output=True)
    done = subprocess.run(
        [str(BORG14), "create", "--json", f"{tmp_path / 'b'}::a", "src"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    doc = json.loads(done.stdout)
    for path, keys in BORG_CREATE_JSON_KEYS.items():
        node = doc
        for part in path.split("."):
            node = node[part]
        assert set(node) == keys, path


def test_placeholders_in_name_and_comment(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    result = hoard(
        "create",
        "--comment",
        "by {user} on {hostname}",
        f"{repo}::{{hostname}}-{{now:%Y-%m-%d}}-{{user}}",
        "src",
        cwd=tmp_path,
    )
    assert result.rc == 0
    user = pwd.getpwuid(os.getuid()).pw_name
    host = socket.gethostname().split(".")[0]
    (name,) = archive_names(hoard, repo)
    today = datetime.now().astimezone().strftime("%Y-%m-%d")
    assert name == f"{host}-{today}-{user}"
    assert archive_record(hoard, repo, name).comment == f"by {user} on {host}"


def test_unknown_placeholder_is_an_error(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    result = hoard.run(
        "create", f"{repo}::{{nope}}", "src", cwd=tmp_path, env={"BORG_EXIT_CODES": "modern"}
    )
    assert_one_line(result, 6, "nope")


def test_timestamp_is_utc(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    hoard("create", "--timestamp", "2020-01-02T03:04:05", f"{repo}::a", "src", cwd=tmp_path)
    record = archive_record(hoard, repo, "a")
    assert record.start_dt == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    (tmp_path / "ref").touch()
    os.utime(tmp_path / "ref", (1_000_000_000, 1_000_000_000))
    hoard("create", "--timestamp", str(tmp_path / "ref"), f"{repo}::b", "src", cwd=tmp_path)
    assert archive_record(hoard, repo, "b").time == 1_000_000_000 * 10**9


def special_tree(root: Path) -> Path:
    """A file, a directory, a symlink, two hard links, a FIFO, an excluded file."""
    (root / "dir").mkdir(parents=True)
    (root / "dir/file").write_text("content\n")
    (root / "link").symlink_to("dir/file")
    (root / "hard1").write_text("linked\n")
    os.link(root / "hard1", root / "hard2")
    os.mkfifo(root / "fifo")
    (root / "skip.tmp").write_text("excluded\n")
    return root


def test_list_status_letters_and_filter(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    special_tree(tmp_path / "src")
    result = hoard(
        "create", "--list", "--exclude", "*.tmp", f"{repo}::a", "src", "/dev/null", cwd=tmp_path
    )
    assert sorted(list_lines(result)) == [
        ("A", "src/dir/file"),
        ("A", "src/hard1"),
        ("c", "/dev/null"),
        ("d", "src"),
        ("d", "src/dir"),
        ("f", "src/fifo"),
        ("h", "src/hard2"),
        ("s", "src/link"),
        ("x", "src/skip.tmp"),
    ]
    assert "dev/null" in archived_paths(hoard, repo, "a")
    # the files cache off: read again, not U (which depends on their timestamps)
    result = hoard(
        "create", "--list", "--filter=Ax", "--files-cache=disabled", f"{repo}::b", "src",
        cwd=tmp_path,
    )  # fmt: skip
    assert sorted(list_lines(result)) == [
        ("A", "src/dir/file"),
        ("A", "src/hard1"),
        ("A", "src/skip.tmp"),
    ]
    assert result.err.count("\n") == 3


def test_list_with_log_json(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    special_tree(tmp_path / "src")
    result = hoard("create", "--list", "--log-json", f"{repo}::a", "src/dir", cwd=tmp_path)
    records = [json.loads(line) for line in result.err.splitlines()]
    assert {"type": "file_status", "status": "A", "path": "src/dir/file"} in records


def test_dry_run_writes_nothing_and_needs_no_repository(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    special_tree(tmp_path / "src")
    before = tree_hashes(repo)
    result = hoard("create", "--dry-run", "--list", "--stats", f"{repo}::a", "src", cwd=tmp_path)
    assert tree_hashes(repo) == before
    assert {s for s, _ in list_lines(result)} == {"-"}
    assert "Archive name" not in result.err  # Borg: --stats is ignored with --dry-run
    assert archive_names(hoard, repo) == []
    # As in Borg, a dry run does not open the repository at all.
    hoard("create", "-n", f"{tmp_path / 'nowhere'}::a", "src", cwd=tmp_path)
    assert not (tmp_path / "nowhere").exists()


def test_stdin(hoard: Hoard, repo: Path) -> None:
    data = os.urandom(3 * MiB)
    result = hoard(
        "create",
        "--list",
        "--stdin-name",
        "dumps/db.sql",
        "--stdin-mode",
        "0640",
        f"{repo}::a",
        "-",
        input=data,
    )
    assert list_lines(result) == [("i", "dumps/db.sql")]
    entry = archive_entries(hoard, repo, "a")["dumps/db.sql"]
    assert entry.mode == stat.S_IFREG | 0o640
    assert (entry.user, entry.group, entry.uid) == (
        pwd.getpwuid(0).pw_name,
        grp.getgrgid(0).gr_name,
        0,
    )
    assert entry.size == len(data)
    out = hoard("extract", "--stdout", f"{repo}::a").stdout_bytes
    assert out == data


def test_stdin_unknown_user_is_an_error(hoard: Hoard, repo: Path) -> None:
    result = hoard.run("create", "--stdin-user", "no-such-user-x", f"{repo}::a", "-", input=b"x")
    assert_one_line(result, 2, "no such user: no-such-user-x")
    assert archive_names(hoard, repo) == []


def test_read_special_reads_a_fifo(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with fifo_writer(src / "pipe"):
        result = hoard("create", "--list", "--read-special", f"{repo}::a", "src", cwd=tmp_path)
    assert ("A", "src/pipe") in list_lines(result)
    entry = archive_entries(hoard, repo, "a")["src/pipe"]
    assert stat.S_ISREG(entry.mode) and entry.size == len(b"fifo data\n")


def test_repository_and_cache_inside_the_tree_are_skipped(hoard: Hoard, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data/f").write_text("x")
    hoard("init", "-e", "repokey", src / "repo")
    hoard.env["BORG_CACHE_DIR"] = str(src / "cache")
    hoard("create", f"{src / 'repo'}::a", "src", cwd=tmp_path)
    hoard("create", f"{src / 'repo'}::b", "src", cwd=tmp_path)
    assert archived_paths(hoard, src / "repo", "b") == {"src", "src/data", "src/data/f"}


def test_umask_applies_to_repository_files(hoard: Hoard, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    hoard("init", "-e", "none", "--umask", "0027", tmp_path / "r")
    assert stat.S_IMODE((tmp_path / "r/config").stat().st_mode) == 0o640
    hoard("init", "-e", "none", tmp_path / "default")
    assert stat.S_IMODE((tmp_path / "default/config").stat().st_mode) == 0o600


# --- warnings -------------------------------------------------------------------------------


def test_file_vanished_between_listing_and_reading(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "a-pipe")
    (src / "b-file").write_text("soon gone")
    for modern, rc in ((False, 1), (True, 107)):
        (src / "b-file").write_text("soon gone")
        env = {"BORG_EXIT_CODES": "modern"} if modern else {}
        name = f"a{int(modern)}"
        with fifo_writer(src / "a-pipe", (src / "b-file").unlink):
            result = hoard.run(
                "create",
                "--list",
                "--read-special",
                f"{repo}::{name}",
                "src",
                env=env,
                cwd=tmp_path,
            )
        assert result.rc == rc, str(result)
        assert ("E", "src/b-file") in list_lines(result)
        assert "src/b-file: stat: [Errno 2] No such file or directory: 'b-file'" in result.err
        assert archived_paths(hoard, repo, name) == {"src", "src/a-pipe"}


def run_as_nobody(hoard: Hoard, *args: str, cwd: Path, env: dict[str, str]) -> Result:
    """Run hoard as uid/gid 65534 (root only), so that permissions apply."""
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", HOARD, *args],
        env={**hoard.env, **env},
        cwd=cwd,
        capture_output=True,
        check=False,
        timeout=300,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode(), done.stdout)


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A world-writable directory outside pytest's private (0700) tree, for the
    unprivileged user of :func:`run_as_nobody`."""
    path = Path(tempfile.mkdtemp(prefix="hoard-nobody-"))
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_unreadable_file_is_a_warning_and_the_archive_is_made(hoard: Hoard) -> None:
    with shared_dir() as where:
        src = where / "src"
        src.mkdir(mode=0o755)
        (src / "readable").write_text("fine")
        (src / "secret").write_text("no access")
        os.chmod(src / "secret", 0o000)
        os.chmod(src / "readable", 0o644)
        repo = where / "repo"
        hoard.env["BORG_BASE_DIR"] = str(where / "home")

        def run(*args: str, env: dict[str, str]) -> Result:
            if is_root():  # root reads everything: back up as an unprivileged user
                return run_as_nobody(hoard, *args, cwd=where, env=env)
            return hoard.run(*args, cwd=where, env=env)

        assert run("init", "-e", "repokey", str(repo), env={}).rc == 0
        for modern, rc in ((False, 1), (True, 105)):
            env = {"BORG_EXIT_CODES": "modern"} if modern else {}
            result = run("create", "--list", f"{repo}::a{int(modern)}", "src", env=env)
            assert result.rc == rc, str(result)
            assert ("E", "src/secret") in list_lines(result)
            assert ("A", "src/readable") in list_lines(result)
            assert "src/secret: open: [Errno 13] Permission denied: 'secret'" in result.err
            assert "Traceback" not in result.err
        assert archived_paths(hoard, repo, "a1") == {"src", "src/readable"}


def test_file_changed_while_read(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_big_file(src / "busy.bin", 48 * MiB)
    stop = threading.Event()

    def touch() -> None:  # a ctime change every few microseconds, as a writer would
        mode = 0o600
        while not stop.is_set():
            mode ^= 0o040
            os.chmod(src / "busy.bin", mode)

    toucher = threading.Thread(target=touch, daemon=True)
    toucher.start()
    try:
        env = {"BORG_EXIT_CODES": "modern"}
        result = hoard.run("create", "--list", f"{repo}::a", "src", env=env, cwd=tmp_path)
    finally:
        stop.set()
        toucher.join()
    assert result.rc == 100, str(result)
    assert [s for s, p in list_lines(result) if p == "src/busy.bin"] == ["A", "C"]
    assert "src/busy.bin: file changed while we backed it up" in result.err
    assert "src/busy.bin" in archived_paths(hoard, repo, "a")


# --- signals --------------------------------------------------------------------------------


def start_blocked_create(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``create --read-special`` on a tree whose first item is a FIFO nobody writes."""
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "data.bin").write_bytes(os.urandom(4 * MiB))
    os.mkfifo(src / "0-pipe")
    proc = subprocess.Popen(
        [HOARD, "create", "--read-special", f"{repo}::a", "src"],
        env=hoard.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, src / "0-pipe"


def test_ctrl_c_stops_the_backup_cleanly(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    proc, pipe = start_blocked_create(hoard, repo, tmp_path)
    with open(pipe, "wb") as writer:  # returns once hoard opened the FIFO: it is mid-backup
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        writer.write(b"last words")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.decode() == "Error: Got Ctrl-C / SIGINT.\n"
    assert archive_names(hoard, repo) == ["a.checkpoint"]  # what was done is kept
    hoard("create", f"{repo}::again", "src/data.bin", cwd=tmp_path)  # nothing left locked


def test_second_ctrl_c_and_sigterm_interrupt_at_once(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    proc, pipe = start_blocked_create(hoard, repo, tmp_path)
    with open(pipe, "wb"):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # hoard is blocked reading the FIFO
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode() == "Keyboard interrupt\n"
    proc, pipe = start_blocked_create(hoard, repo, tmp_path / "t")
    with open(pipe, "wb"):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.decode() == "Received SIGTERM\n"
    assert archive_names(hoard, repo) == []


# --- file systems ---------------------------------------------------------------------------


@contextmanager
def other_file_system(where: Path) -> Iterator[tuple[list[str], str, Path]]:
    """Roots to back up, the archive path of a mount point below them, and that
    mount point: a fresh tmpfs below ``where`` (needs root), else /dev with its
    /dev/shm (another file system on every Linux)."""
    mount_point = where / "mnt"
    mount_point.mkdir()
    mount = ["mount", "-t", "tmpfs", "none", str(mount_point)]
    done = subprocess.run(mount, capture_output=True, check=False)
    if done.returncode != 0:
        mount_point.rmdir()
        assert os.stat("/dev/shm").st_dev != os.stat("/dev").st_dev
        yield ["/dev"], "dev/shm", Path("/dev/shm")
        return
    try:
        yield ["src"], "src/mnt", mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_one_file_system(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "here").write_text("same fs")
    with other_file_system(src) as (roots, inside, mount):
        marker = mount / f"hoard-test-{os.getpid()}"
        marker.write_text("other fs")
        try:
            for name, options in (("x", ["-x"]), ("all", [])):
                result = hoard.run("create", *options, f"{repo}::{name}", *roots, cwd=tmp_path)
                assert result.rc in (0, 1), str(result)  # /dev may hold unreadable things
        finally:
            marker.unlink()
    with_x = archived_paths(hoard, repo, "x")
    assert inside in with_x  # the mount point itself is kept (as Borg's code does)
    assert f"{inside}/{marker.name}" not in with_x
    assert f"{inside}/{marker.name}" in archived_paths(hoard, repo, "all")


def test_getpass_user_is_recorded(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    record = archive_record(hoard, repo, "a")
    assert record.username == getpass.getuser()
    assert record.hostname == socket.gethostname()
    assert record.cmdline == ["hoard", "create", f"{repo}::a", "src"]


# --- paths and content from elsewhere -------------------------------------------------------


def test_paths_from_stdin_archives_exactly_those_items(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    special_tree(tmp_path / "src")
    listing = b"\0".join([b"src/dir", b"src/hard1", b"src/link", b"missing"]) + b"\0"
    result = hoard.run(
        "create",
        "--list",
        "--paths-from-stdin",
        "--paths-delimiter",
        "\\0",
        f"{repo}::a",
        input=listing,
        cwd=tmp_path,
    )
    assert result.rc == 1, str(result)  # "missing" is a warning, as in Borg
    assert list_lines(result) == [
        ("d", "src/dir"),
        ("A", "src/hard1"),
        ("s", "src/link"),
        ("E", "missing"),
    ]
    assert archived_paths(hoard, repo, "a") == {"src/dir", "src/hard1", "src/link"}  # no recursion


def test_paths_from_command(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    special_tree(tmp_path / "src")
    hoard("create", "--paths-from-command", f"{repo}::a", "--", "find", "src/dir", cwd=tmp_path)
    assert archived_paths(hoard, repo, "a") == {"src/dir", "src/dir/file"}
    failed = hoard.run(
        "create",
        "--paths-from-command",
        f"{repo}::b",
        "--",
        "sh",
        "-c",
        "echo src/dir; exit 3",
        cwd=tmp_path,
        env={"BORG_EXIT_CODES": "modern"},
    )
    assert_one_line(failed, 4, "Command 'sh' exited with status 3")
    assert archive_names(hoard, repo) == ["a"]


def test_content_from_command(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    result = hoard(
        "create",
        "--list",
        "--stdin-name",
        "hello.txt",
        "--content-from-command",
        f"{repo}::a",
        "--",
        "printf",
        "hello",
        cwd=tmp_path,
    )
    assert list_lines(result) == [("i", "hello.txt")]
    assert hoard("extract", "--stdout", f"{repo}::a").out == "hello"
    failed = hoard.run(
        "create", "--content-from-command", f"{repo}::b", "--", "sh", "-c", "echo x; exit 5"
    )
    assert_one_line(failed, 2, "Command 'sh' exited with status 5")
    missing = hoard.run("create", "--content-from-command", f"{repo}::c", "--", "no-such-cmd-x")
    assert_one_line(missing, 2, "Failed to execute command")
    assert archive_names(hoard, repo) == ["a"]
