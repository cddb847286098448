#!/usr/bin/env bash
# Prepares a fresh Debian machine (or a developer's) for hoard: the Debian
# packages it needs when they are missing (only when running as root), a
# virtualenv in .venv, and hoard installed into it in editable mode with its
# development tools. Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
apt_packages=()

need_python_pkgs() {
    command -v "$PYTHON" >/dev/null 2>&1 || { apt_packages+=(python3); return; }
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
    "$PYTHON" - <<'PY' >/dev/null 2>&1 || apt_packages+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
    command -v cc >/dev/null 2>&1 || apt_packages+=(gcc libc6-dev)
}

need_test_tools() {
    # getfattr/setfacl check extended attributes and ACLs in the round-trip tests.
    command -v setfacl >/dev/null 2>&1 || apt_packages+=(acl)
    command -v setfattr >/dev/null 2>&1 || apt_packages+=(attr)
    # The ssh tests start a real sshd on 127.0.0.1 and connect with ssh.
    [ -x /usr/sbin/sshd ] || apt_packages+=(openssh-server)
    command -v ssh >/dev/null 2>&1 || apt_packages+=(openssh-client)
}

need_python_pkgs
[ "${1:-}" = "--test-tools" ] && need_test_tools

if [ ${#apt_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "hoard needs these Debian packages: ${apt_packages[*]} (run as root or install them)" >&2
        exit 2
    fi
    echo "Installing Debian packages: ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# Reinstall only when the build inputs changed (a fresh checkout has no stamp).
stamp=.venv/.hoard-install-stamp
want=$(cat pyproject.toml setup.py src/hoard/archive/_chunker.c 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import hoard.archive._chunker' 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
