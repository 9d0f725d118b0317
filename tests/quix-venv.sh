#!/usr/bin/env bash
# Makes (once) the Python virtual environment with Quix Streams, the
# reference qhost is compared with (tests/conformance) and measured against
# (bench/), and prints its python's path. Installs python3-venv with apt-get
# when Python cannot make a venv.
#   tests/quix-venv.sh [VENV_DIR]     default: build/quix-venv
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/build/quix-venv}
QUIX_VERSION=${QUIX_VERSION:-3.28.1}

ready() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import sys, quixstreams; sys.exit(quixstreams.__version__ != '$QUIX_VERSION')" \
      >/dev/null 2>&1
}

if ! ready; then
  py=${QUIX_PYTHON:-python3}
  # Debian splits venv/ensurepip out of python3 into python3-venv.
  if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -c "import venv, ensurepip" >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing python3-venv with apt-get" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    command -v "$py" >/dev/null 2>&1 && "$py" -c "import venv, ensurepip" >/dev/null 2>&1 || py=/usr/bin/python3
  fi
  echo "creating $VENV with quixstreams==$QUIX_VERSION" >&2
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "quixstreams==$QUIX_VERSION" >&2
  ready
fi
echo "$VENV/bin/python"
