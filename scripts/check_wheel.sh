#!/usr/bin/env bash
# Install modalens as a user does, from its wheel, and run the main job with it (CI runs this before the tests).
#
# Builds the wheel, installs it into a fresh virtual environment, and runs `modalens quickstart` on a
# small shop catalogue from a folder outside the source tree, with no PYTHONPATH: a file that the wheel
# lacks (weights, the web page, configs, caption sets) or an import of the source tree fails here.
# It then serves the page from the wheel and fetches it, with the offline API docs.
#
# Dependencies: by default the fresh environment sees the development environment's packages
# (those of .venv, or of $MODALENS_PY's environment), not its modalens, and `pip check` proves that
# the wheel's declared requirements are all met there. With --full it resolves every dependency
# from the package index instead, as `pip install modalens` does (minutes; for a release).
#
# Usage: bash scripts/check_wheel.sh [--full]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=${MODALENS_PY:-$repo/.venv/bin/python}
full=${1:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/modalens-wheel.XXXXXX")
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

echo "wheel check: building"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" . 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$work"/dist/modalens-*.whl)
"$PY" -m venv "$work/venv"
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ "$full" = "--full" ]; then
  "$work/venv/bin/python" -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  "$work/venv/bin/python" -m pip install -q "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
else
  # The development environment's packages as a plain path (its .pth files, the editable modalens
  # among them, are not read from there), after the fresh environment's own.
  "$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$site/zz-dev-packages.pth"
  "$work/venv/bin/python" -m pip uninstall -q -y setuptools 2>/dev/null || true  # the venv's old seed would shadow the dev one
  "$work/venv/bin/python" -m pip install -q --no-deps "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
fi
"$work/venv/bin/python" -m pip check

# A user's folder: a 20-product catalogue with id,image,title,price,brand and its photos.
mkdir -p "$work/user/shop" "$work/user/mini-catalog"
cp tests/fixtures/custom-shop/products.csv "$work/user/shop/"
cp -r tests/fixtures/mini-catalog/images "$work/user/mini-catalog/"
cd "$work/user"
export MODALENS_CACHE="$work/cache"
unset PYTHONPATH
bin="$work/venv/bin"
"$bin/python" - "$repo" <<'EOF'
import sys, modalens
from pathlib import Path
where = Path(modalens.__file__).resolve()
assert Path(sys.argv[1]).resolve() not in where.parents, f"modalens imported from the source tree: {where}"
print(f"wheel check: modalens {modalens.__version__} from {where.parent}")
EOF
"$bin/modalens" quickstart --catalogue shop/products.csv --no-serve --no-progress > quickstart.log
grep -q "20 added" quickstart.log || { cat quickstart.log; echo "wheel check: quickstart did not index the shop" >&2; exit 1; }
"$bin/modalens" search "black watch" -k 1 -f brand=Puma --price-max 200 | grep -q "SKU-004" \
  || { echo "wheel check: search did not find SKU-004" >&2; exit 1; }
"$bin/python" -c "import modalens; m = modalens.load(); print('wheel check: Python API', m.encode_text('red dress').shape)"

port=$("$bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$bin/modalens" serve --port "$port" > serve.log 2>&1 &
server=$!
"$bin/python" - "$port" <<'EOF'
import sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(600):
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
for path, needle in [("/", b"modalens"), ("/static/app.js", b"fetch"), ("/docs", b"/static-docs/swagger-ui-bundle.js"),
                     ("/static-docs/swagger-ui-bundle.js", b"SwaggerUIBundle"), ("/api/facets", b'"name":"brand"')]:
    body = urllib.request.urlopen(base + path, timeout=10).read()
    assert needle in body, (path, body[:200])
print("wheel check: served the page, the API and /docs from the wheel")
EOF
echo "wheel check: ok ($(basename "$wheel"))"
