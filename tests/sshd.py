"""A real OpenSSH server on 127.0.0.1 for the ssh repository tests.

Each pytest worker starts its own ``sshd`` on a free port with its own host
key, config and authorized keys, in a private directory; clients reach it
with ``ssh -F <dir>/ssh_config``, so nothing of the machine's own ssh setup
is read or changed. Two client keys are authorized: ``key`` logs in
normally (so ``hoard serve`` runs as the client asks), ``restricted_key``
gets the forced command a test writes with ``restrict``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/usr/bin") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    hoard: str
    """The hoard executable on the "remote" side (this venv's)."""

    @property
    def rsh(self) -> str:
        """BORG_RSH for a client of this server (the normal key)."""
        return f"ssh -F {self.directory / 'ssh_config'}"

    @property
    def restricted_rsh(self) -> str:
        """BORG_RSH that logs in with the key bound to the forced command."""
        return f"{self.rsh} -i {self.directory / 'restricted_key'}"

    def url(self, path: Path | str) -> str:
        """The ssh:// location of an absolute path on the "remote" host."""
        return f"ssh://root@127.0.0.1:{self.port}{os.fspath(path)}"

    def env(self) -> dict[str, str]:
        """The environment a hoard client needs to use this server."""
        return {"BORG_RSH": self.rsh, "BORG_REMOTE_PATH": self.hoard}

    def restrict(self, serve_options: str) -> None:
        """Bind the restricted key to ``hoard serve SERVE_OPTIONS`` (a forced command)."""
        public = (self.directory / "key.pub").read_text().strip()
        restricted = (self.directory / "restricted_key.pub").read_text().strip()
        command = f"{self.hoard} serve {serve_options}".replace('"', '\\"')
        (self.directory / "authorized_keys").write_text(
            f'{public}\ncommand="{command}",restrict {restricted}\n'
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh") is not None and os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start(directory: Path, hoard: str) -> Sshd:
    """Start sshd in ``directory`` (created) and wait until it accepts connections."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for name in ("host_key", "key", "restricted_key"):
        _keygen(directory / name)
    port = _free_port()
    (directory / "authorized_keys").write_text((directory / "key.pub").read_text())
    (directory / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {directory / 'host_key'}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    host_public = (directory / "host_key.pub").read_text().split()
    (directory / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n"
    )
    (directory / "ssh_config").write_text(
        "\n".join(
            [
                "Host *",
                f"  IdentityFile {directory / 'key'}",
                f"  UserKnownHostsFile {directory / 'known_hosts'}",
                "  StrictHostKeyChecking yes",
                "  BatchMode yes",
                "  LogLevel ERROR",
                "  ControlMaster no",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 - sshd writes it for its whole life
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(directory / "sshd_config")], stdout=log, stderr=log
    )
    server = Sshd(directory, port, process, hoard)
    _wait_until_up(server)
    return server


def _wait_until_up(server: Sshd) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(server.directory / 'sshd.log').read_text()}")
        probe = subprocess.run(
            [*shlex.split(server.rsh), "-p", str(server.port), "root@127.0.0.1", "true"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sshd did not come up: {(server.directory / 'sshd.log').read_text()}")
