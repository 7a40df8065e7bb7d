#!/usr/bin/env bash
# Usage: tools/headless-opencv.sh VENV
# menjin depends on opencv-python-headless: a gate board (Raspberry Pi OS Lite) has no libGL, which
# the GUI build opencv-python needs. insightface, the reference implementation that tests and
# benches compare against (the `dev` extra, never installed on a board), requires opencv-python, and
# both wheels install the same `cv2` package. When both are present, the GUI wheel is removed and the
# headless one reinstalled at the version pip resolved, so `import cv2` works without libGL.
set -euo pipefail
py=${1:?usage: headless-opencv.sh VENV}/bin/python
if "$py" -m pip show -q opencv-python >/dev/null 2>&1; then
  version=$("$py" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')
  "$py" -m pip uninstall -y -q opencv-python
  "$py" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$version"
fi
"$py" -c 'import cv2; print("cv2", cv2.__version__, "imports")'
