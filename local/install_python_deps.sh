#!/usr/bin/env bash
# make install: the virtualenv (created when missing) with the project installed editable with
# its dev and export extras. When pip fails, says how much disk the virtualenv's file system has
# left: torch's CUDA build with its NVIDIA libraries takes about 6 GB, which a nearly full disk
# turns into pip's one-line "No space left on device" after minutes of downloads.
#
#   bash local/install_python_deps.sh .venv
set -euo pipefail
venv=${1:?usage: install_python_deps.sh VENV_DIR}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -m pip install -q -e '.[dev,export]'; then
  free_gb=$(df -Pk "$venv" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }')
  echo "make install: pip could not install asr-recipes and its packages into $venv" \
       "($free_gb GB left on that disk). If the disk is full: free space (torch's CUDA build needs" \
       "about 6 GB), or put a CPU build of torch into $venv first (e.g." \
       "$venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu), then run" \
       "make again." >&2
  exit 1
fi
