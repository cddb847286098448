#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, format, types, layer contract,
# then every test on two workers. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test-tools
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff";          ruff check src tests benchmarks
echo "== ruff format";   ruff format --check src tests benchmarks
echo "== mypy --strict"; mypy
echo "== import layers"; lint-imports
echo "== pytest";        python -m pytest -n 2 -q "$@"
