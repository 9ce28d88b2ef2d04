#!/usr/bin/env bash
# Build the wheel, install it (not editable) into a fresh virtualenv outside the checkout, and run
# mlxdraft from there: the model lists and every other data file must come from the wheel itself.
# Usage: scripts/wheel_check.sh [PYTHON]   (make wheel-check)
set -euo pipefail
python=${1:-python3}
checkout=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "wheel-check: building the wheel in $work"
"$python" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install --quiet --upgrade pip build
"$work/build-env/bin/python" -m build --wheel --outdir "$work/dist" "$checkout" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/mlxdraft-*.whl)
echo "wheel-check: installing $(basename "$wheel") into a fresh virtualenv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$wheel"
cp "$checkout/tests/data/sweep-v1.json" "$work/results.json"
cd "$work"  # nothing of the checkout is importable from here
export MLXDRAFT_HOME="$work/home" MLXDRAFT_MODEL_LISTS=""
bin="$work/venv/bin"
"$bin/python" - <<'PY'
import mlxdraft, pathlib, sys
location = pathlib.Path(mlxdraft.__file__).resolve()
assert "site-packages" in location.parts, f"mlxdraft was imported from {location}, not from the installed wheel"
PY
"$bin/mlxdraft" --version
for family in qwen2.5 llama3 smollm2 qwen2.5-coder; do
    count=$("$bin/mlxdraft" models --family "$family" --json | "$bin/python" -c \
        'import json, sys; print(len(json.load(sys.stdin)["models"]))')
    [ "$count" -gt 0 ] || { echo "wheel-check: no $family models in the installed wheel"; exit 1; }
    echo "wheel-check: models --family $family lists $count models"
done
"$bin/mlxdraft" report results.json --format markdown >report.md
grep -q "tiny-target" report.md || { echo "wheel-check: the report does not name the target of results.json"; cat report.md; exit 1; }
echo "wheel-check: report rendered $(wc -l <report.md) lines; the installed wheel works"
