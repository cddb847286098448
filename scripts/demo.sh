#!/usr/bin/env bash
# Installs hoard (Debian packages and a virtualenv as needed) and runs a real
# backup and restore of a sample directory, then shows that the restored tree
# is identical. Everything it makes lives under one temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d /tmp/hoard-demo.XXXXXX)
sample="$work/sample"
mkdir -p "$sample"
cp -a src docs README.md "$sample/"
stdlib=$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
cp -a "$stdlib/json" "$stdlib/email" "$sample/"
truncate -s 64M "$sample/disk.img" && printf 'boot sector' | dd of="$sample/disk.img" conv=notrunc status=none
ln -s README.md "$sample/link-to-readme"

export BORG_PASSPHRASE=demo-passphrase
export BORG_BASE_DIR="$work/home"
repo="$work/repo"

set -x
hoard init --encryption repokey "$repo"
hoard create --stats "$repo::demo-{now:%Y-%m-%d}" "$sample"
hoard create --stats --list --filter AM "$repo::demo-again-{now:%Y-%m-%d}" "$sample"
hoard list "$repo"
hoard info "$repo"
mkdir "$work/restore" && cd "$work/restore"
hoard extract --sparse "$repo::demo-$(date +%Y-%m-%d)"
set +x
diff -r --no-dereference "$sample" "$work/restore/${sample#/}"
echo
echo "Restored tree is identical to $sample (repository: $repo)."
