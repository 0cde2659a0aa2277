#!/usr/bin/env bash
# Install pyrt into .venv (if not there yet) and run a busybox container with pyrt-runc:
# builds a bundle (busybox rootfs + `pyrt-runc spec`), then `pyrt-runc run`, then cleans up.
# Needs root, and Debian's busybox-static, cmake, g++, python3-dev, python3-venv.
# Usage: sudo bash scripts/demo-runc.sh [command...]   (default: a short tour)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
[ "$(id -u)" -eq 0 ] || { echo "demo-runc.sh: run as root" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "demo-runc.sh: apt-get install busybox-static" >&2; exit 1; }

if [ ! -x "$VENV/bin/pyrt-runc" ]; then
  echo "installing pyrt into $VENV ..."
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "$ROOT"
fi
RUNC=$VENV/bin/pyrt-runc

WORK=$(mktemp -d /tmp/pyrt-demo.XXXXXX)
ID=demo-$$-$RANDOM
cleanup() {
  "$RUNC" --root "$WORK/state" delete --force "$ID" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$#" -eq 0 ]; then
  set -- /bin/sh -c 'echo "hello from pyrt: $(hostname), uid $(id -u), pid $$"; ls /; cat /proc/self/cgroup | head -3'
fi

# the rootfs: the same builder the tests use (tests/bundle.py)
"$VENV/bin/python" - "$ROOT" "$WORK/bundle/rootfs" <<'PY'
import sys
from pathlib import Path
sys.path.append(sys.argv[1])
from tests.bundle import make_busybox_rootfs
make_busybox_rootfs(Path(sys.argv[2]))
PY
# config.json: pyrt-runc's default spec, with our command and no terminal
"$RUNC" spec --bundle "$WORK/bundle"
"$VENV/bin/python" - "$WORK/bundle/config.json" "$ID" "$@" <<'PY'
import json, sys
path, cid, *args = sys.argv[1:]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = args
spec["hostname"] = "pyrt-demo"
spec.setdefault("linux", {})["cgroupsPath"] = f"/pyrt-demo-{cid}"
json.dump(spec, open(path, "w"), indent=2)
PY

echo "+ pyrt-runc --root $WORK/state run --bundle $WORK/bundle $ID"
rc=0
"$RUNC" --root "$WORK/state" run --bundle "$WORK/bundle" "$ID" </dev/null || rc=$?
echo "container exited with status $rc"
exit "$rc"
