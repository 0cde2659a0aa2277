#!/usr/bin/env bash
# Run every benchmarks/bench_*.py with the given flags (e.g. --quick, --write-readme),
# with the repo's .venv Python (override with PYTHON=...). Exits non-zero if any failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$here/../.venv/bin/python}
if [ ! -x "$PY" ]; then
  echo "run_all.sh: $PY not found; create the venv first (see README.md) or set PYTHON" >&2
  exit 1
fi
shopt -s nullglob
benches=("$here"/bench_*.py)
if [ "${#benches[@]}" -eq 0 ]; then
  echo "run_all.sh: no benchmarks/bench_*.py found" >&2
  exit 1
fi
failed=()
for b in "${benches[@]}"; do
  printf '\n=== %s %s\n' "$(basename "$b")" "$*"
  "$PY" "$b" "$@" || failed+=("$(basename "$b")")
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "run_all.sh: failed: ${failed[*]}" >&2
  exit 1
fi
