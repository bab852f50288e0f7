#!/usr/bin/env bash
# The test command (README and .ci/run): set up if needed, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
