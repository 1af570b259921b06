#!/usr/bin/env bash
# `make gpu-check`: runs python -m asr_recipes.bin.gpu_check "$@" with the interpreter at hand:
# .venv/bin/python if there is one, else python3 (the GPU machine's, with its own torch).
# Where that interpreter lacks lhotse/hydra (the GPU machine: no network), the wheels that
# `make gpu-prepare` saved in .gpu-check/wheels are installed into a private folder first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if ! "$py" -c "import lhotse, hydra, kaldialign" 2>/dev/null; then
  wheels=.gpu-check/wheels
  if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "gpu_check.sh: $py lacks lhotse/hydra and $wheels holds no wheels: run 'make gpu-prepare' on a machine" \
      "with network first (or 'make install')" >&2
    exit 1
  fi
  site=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
exec "$py" -m asr_recipes.bin.gpu_check "$@"
