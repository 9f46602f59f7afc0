#!/usr/bin/env bash
# fedleak set-up and main jobs: creates (or reuses) a local virtual environment in .venv.
#   ./quickstart.sh demo   install, then run the quick scenario (picture + tables + report)
#   ./quickstart.sh test   install, then lint, type-check and run the test suite
#   ./quickstart.sh setup  install only
set -euo pipefail
cd "$(dirname "$0")"
VENV=${FEDLEAK_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
  if [ ! -x "$VENV/bin/python" ] && ! "$PY" -m venv "$VENV" && ! "$PY" -m virtualenv "$VENV"; then
    echo "cannot create $VENV: install Python's venv module (Debian/Ubuntu: apt install python3-venv) or virtualenv" >&2
    exit 1
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "installing PyTorch (CUDA build: an NVIDIA GPU was found)"
      "${pip[@]}" install "torch>=2.4"
    elif "${pip[@]}" install "torch==2.13.0+cpu" >/dev/null 2>&1; then
      echo "installed PyTorch 2.13.0+cpu (CPU build found in the configured package sources)"
    else
      echo "installing PyTorch (CPU build from the PyTorch CPU index)"
      "${pip[@]}" install torch --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi
  fi
  local stamp="$VENV/.fedleak-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ ! -x "$VENV/bin/mypy" ]; then
    echo "installing fedleak and its dependencies into $VENV"
    "${pip[@]}" install -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
    "$VENV/bin/python" -c "import fl, flwr, opacus" # fail loudly if the install did not work
    touch "$stamp"
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo) setup; shift; "$VENV/bin/fedleak" demo "$@" ;;
  test) setup; shift; "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check -q . && "$VENV/bin/mypy" && "$VENV/bin/python" -m pytest "$@" ;;
  *) echo "usage: ./quickstart.sh demo|test|setup" >&2; exit 2 ;;
esac
