#!/usr/bin/env bash
# Create .venv and install the pinned dependencies plus every package of this repository
# (editable). Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.mlc-installed
want=$(cat requirements.txt requirements-dev.txt scripts/bootstrap.sh */*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
  -e libs/common \
  -e services/ingress -e services/enricher -e services/dispatcher -e services/auditor \
  -e services/token-keeper \
  -e simulators/exact -e simulators/twilio
echo "$want" > "$stamp"
