"""Every command against an ssh:// repository, through a real sshd on 127.0.0.1.

The round trips (test_roundtrip.py) run over ssh too; here: each command
once, a forced command in authorized_keys, and killed connections.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.conftest import HOARD, Hoard, set_pack_size
from tests.sshd import Sshd


@pytest.fixture
def remote(hoard: Hoard, sshd: Sshd) -> Hoard:
    hoard.use_ssh(sshd)
    return hoard


def make_source(root: Path, files: int = 20) -> Path:
    root.mkdir()
    for i in range(files):
        (root / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1) * 100)
    (root / "sub").mkdir()
    (root / "sub" / "random.bin").write_bytes(os.urandom(300_000))
    return root


def test_every_command_over_ssh(remote: Hoard, tmp_path: Path) -> None:
    make_source(tmp_path / "src")
    repo = remote.loc(tmp_path / "repo")
    remote("init", "--encryption", "repokey", repo)
    remote("create", "--stats", f"{repo}::one", "src", cwd=tmp_path)
    (tmp_path / "src" / "new.txt").write_text("new\n")
    remote("create", f"{repo}::two", "src", cwd=tmp_path)
    assert remote("list", "--short", repo).out.split() == ["one", "two"]
    listing = remote("list", "--json-lines", f"{repo}::two").out.splitlines()
    assert {json.loads(line)["path"] for line in listing} >= {"src/new.txt", "src/sub/random.bin"}
    info = json.loads(remote("info", "--json", repo).out)
    assert info["repository"]["location"] == repo
    out = tmp_path / "out"
    out.mkdir()
    remote("extract", f"{repo}::two", cwd=out)
    assert (out / "src" / "sub" / "random.bin").read_bytes() == (
        tmp_path / "src" / "sub" / "random.bin"
    ).read_bytes()
    assert "src/new.txt" in remote("diff", f"{repo}::one", "two").out
    remote("export-tar", f"{repo}::two", tmp_path / "two.tar")
    remote("import-tar", f"{repo}::from-tar", tmp_path / "two.tar")
    assert remote("diff", "--content-only", f"{repo}::two", "from-tar").out == ""
    remote("delete", f"{repo}::from-tar")
    exported = remote("key", "export", repo).out
    remote("key", "import", repo, "-", input=exported.encode())
    remote("key", "change-passphrase", repo, env={"BORG_NEW_PASSPHRASE": "secret passphrase"})
    remote("rename", f"{repo}::one", "first")
    remote("check", "--verify-data", repo)
    remote("check", "--repair", repo, env={"BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "YES"})
    assert remote("version", repo).out.count("+hoard.") == 2
    remote("with-lock", repo, "true")
    remote("break-lock", repo)
    remote("prune", "--keep-last", "1", repo)
    assert remote("list", "--short", repo).out.split() == ["two"]
    remote("delete", f"{repo}::two")
    remote("compact", repo)
    refused = remote.run("config", repo, "append_only")
    assert refused.rc == 2 and "only works on local repositories" in refused.err
    remote("delete", repo, env={"BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "YES"})
    missing = remote.run("list", repo)
    assert missing.rc == 2 and "does not exist" in missing.err


def test_locations_relative_to_the_remote_home(remote: Hoard, sshd: Sshd, tmp_path: Path) -> None:
    home = Path(os.path.expanduser("~root"))
    name = f"hoard-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        remote("init", "--encryption", "none", f"root@127.0.0.1:{name}", env=_port_env(sshd))
        assert (home / name / "config").exists()
        url = f"ssh://root@127.0.0.1:{sshd.port}/~/{name}"
        assert remote("list", url).out == ""
    finally:
        subprocess.run(["rm", "-rf", str(home / name)], check=True)


def _port_env(sshd: Sshd) -> dict[str, str]:
    """The scp form has no port: ssh's -p goes into BORG_RSH."""
    return {"BORG_RSH": f"{sshd.rsh} -p {sshd.port}"}


def test_a_missing_remote_hoard_and_a_refused_login(remote: Hoard, tmp_path: Path) -> None:
    repo = remote.loc(tmp_path / "repo")
    missing = remote.run("init", "-e", "none", repo, env={"BORG_REMOTE_PATH": "/no/such/hoard"})
    assert missing.rc == 2
    assert "Connection closed by remote host" in missing.err and "--remote-path" in missing.err
    stranger = repo.replace("ssh://root@", "ssh://no-such-user@")
    refused = remote.run("init", "-e", "none", stranger)
    assert refused.rc == 2 and "Connection closed by remote host" in refused.err
    assert not (tmp_path / "repo").exists()


def test_rsh_option_beats_borg_rsh(remote: Hoard, sshd: Sshd, tmp_path: Path) -> None:
    repo = remote.loc(tmp_path / "repo")
    broken = {"BORG_RSH": "false"}
    assert remote.run("init", "-e", "none", repo, env=broken).rc == 2
    remote("init", "-e", "none", "--rsh", sshd.rsh, repo, env=broken)
    remote("list", "--remote-path", sshd.hoard, repo, env={"BORG_REMOTE_PATH": "/nope"})


def test_upload_ratelimit_and_buffer(remote: Hoard, tmp_path: Path) -> None:
    make_source(tmp_path / "src")
    repo = remote.loc(tmp_path / "repo")
    remote("init", "-e", "none", repo)
    remote(
        "create",
        "--upload-ratelimit",
        "100000",
        "--upload-buffer",
        "8",
        f"{repo}::a",
        "src",
        cwd=tmp_path,
    )
    remote("check", repo)
    bad = remote.run("list", "--upload-ratelimit", "-1", repo)
    assert bad.rc == 2 and "--upload-ratelimit" in bad.err


# --- a forced command -------------------------------------------------------------------


def test_forced_command_restricts_path_and_appends_only(
    remote: Hoard, sshd: Sshd, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    make_source(tmp_path / "src")
    sshd.restrict(f"--restrict-to-path {allowed} --append-only")
    env = {"BORG_RSH": sshd.restricted_rsh}
    repo = remote.loc(allowed / "repo")
    try:
        remote("init", "-e", "repokey", repo, env=env)
        remote("create", f"{repo}::a", "src", cwd=tmp_path, env=env)
        remote("create", f"{repo}::b", "src", cwd=tmp_path, env=env)
        outside = remote.run("init", "-e", "none", remote.loc(tmp_path / "other"), env=env)
        assert outside.rc == 2 and "Repository path not allowed" in outside.err
        assert not (tmp_path / "other").exists()
        sneaky = remote.run("init", "-e", "none", sshd.url(f"{allowed}/../other"), env=env)
        assert sneaky.rc == 2 and not (tmp_path / "other").exists()
        # append-only on the server: delete only hides, compact frees nothing
        kept = {p for p in (allowed / "repo").rglob("*") if p.is_file() and "locks" not in p.parts}
        remote("delete", f"{repo}::a", env=env)
        assert remote("list", "--short", repo, env=env).out.split() == ["b"]
        remote.run("compact", repo, env=env)
        assert all(p.exists() for p in kept)
        remote("undelete", f"{repo}::a", env=env)
        assert remote("list", "--short", repo, env=env).out.split() == ["a", "b"]
        # the normal key still reaches everything
        remote("check", repo)
    finally:
        sshd.restrict("")
        (sshd.directory / "authorized_keys").write_text((sshd.directory / "key.pub").read_text())


# --- killed connections -------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for text in child.read_text().split():
            found.append(int(text))
            found.extend(_descendants(int(text)))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _serve_processes(mark: str) -> list[int]:
    """The hoard serve processes started for this test (their environment has ``mark``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and "serve" in _cmdline(int(proc.name)):
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"HOARD_TEST_MARK={mark}".encode() in environ:
                pids.append(int(proc.name))
    return pids


def _started_backup(remote: Hoard, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, str]:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        (data / f"part{i}.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    repo_path = tmp_path / "repo"
    repo = remote.loc(repo_path)
    remote("init", "-e", "repokey", repo)
    set_pack_size(repo_path, 1024 * 1024)  # the checkpoint's flush waits for one small pack only
    # the remote hoard runs under env(1) with a mark, to be found in /proc
    remote_path = f"env HOARD_TEST_MARK={tmp_path} {remote.env['BORG_REMOTE_PATH']}"
    env = {**remote.env, "HOARD_WORKERS": "0", "BORG_REMOTE_PATH": remote_path}
    process = subprocess.Popen(
        [
            HOARD,
            "create",
            "--checkpoint-interval",
            "1",
            "--upload-ratelimit",
            "4000",
            f"{repo}::a",
            "data",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list((repo_path / "archives").glob("*")):  # the first checkpoint is stored
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.1)
    return process, repo_path, repo


def assert_no_damage(remote: Hoard, repo: str) -> None:
    """check finds no damage: at most packs the killed writer stored but never
    indexed (as after a local kill -9), which compact frees."""
    checked = remote.run("check", repo)
    lines = checked.err.splitlines()
    assert checked.rc == 0 or (
        checked.rc == 1
        and lines[-1] == "Check: only garbage found, which 'hoard compact' frees."
        and all(line.endswith("no index file mentions this pack") for line in lines[:-1])
    ), str(checked)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["ssh client", "hoard serve"])
def test_a_killed_connection_mid_backup(remote: Hoard, tmp_path: Path, victim: str) -> None:
    process, repo_path, repo = _started_backup(remote, tmp_path)
    if victim == "ssh client":
        (pid,) = [p for p in _descendants(process.pid) if _cmdline(p)[:1] == ["ssh"]]
    else:
        (pid,) = _serve_processes(str(tmp_path))
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 30
    assert process.returncode == 2
    assert "Connection closed by remote host" in err.decode(), err.decode()
    deadline = time.monotonic() + 10
    while _serve_processes(str(tmp_path)):  # the server ends with its client
        assert time.monotonic() < deadline, "hoard serve outlived its client"
        time.sleep(0.1)
    if victim == "ssh client":  # the server released the lock of its vanished client
        assert not any((repo_path / "locks").glob("*"))
    assert ".checkpoint" in remote("list", "--consider-checkpoints", "--short", repo).out
    assert_no_damage(remote, repo)
    rerun = remote("create", "--stats", "--json", f"{repo}::a", "data", cwd=tmp_path)
    stats = json.loads(rerun.out)["archive"]["stats"]
    assert stats["deduplicated_size"] < stats["original_size"]  # the checkpoint's data is reused
    assert_no_damage(remote, repo)


def test_forced_storage_quota_is_set_on_init_and_enforced(
    remote: Hoard, sshd: Sshd, tmp_path: Path
) -> None:
    sshd.restrict("--storage-quota 20M")
    env = {"BORG_RSH": sshd.restricted_rsh}
    repo_path = tmp_path / "repo"
    try:
        remote("init", "-e", "none", remote.loc(repo_path), env=env)
        assert json.loads((repo_path / "config").read_text())["storage_quota"] == 20_000_000
        data = tmp_path / "data"
        data.mkdir()
        (data / "big").write_bytes(os.urandom(30_000_000))
        full = remote.run("create", remote.loc(repo_path) + "::a", "data", cwd=tmp_path, env=env)
        assert full.rc == 2 and "storage quota" in full.err.lower(), str(full)
        assert remote("list", remote.loc(repo_path)).out == ""
    finally:
        sshd.restrict("")
        (sshd.directory / "authorized_keys").write_text((sshd.directory / "key.pub").read_text())
