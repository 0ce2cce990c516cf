#!/usr/bin/env bash
# The GPU check, in one go from a fresh checkout (bench/gpu_check.py says what it measures):
#
#   bash bench/gpu_check.sh [--checkpoint vq-wav2vec_kmeans.pt] [--out gpu_check.json] [--dry]
#
# Python: $PYTHON, else python3 (on a CUDA machine: the one whose torch sees the GPU; this
# script never installs torch, so the CUDA build stays). What it installs into that Python,
# only when missing: the project's other dependencies and the frontends extra (opensmile,
# transformers, safetensors), from PyPI (every dependency of pyproject.toml but torch), or, on
# a machine without PyPI, from wheels put in .whl/ beforehand (README
# "GPU check"). Sized for 8 minutes (store build ~1 min, 3 front ends x workers 0,4 x 3 epochs);
# not yet timed on a GPU (none lent so far). The test suite runs --dry end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
need='import soundfile, soxr, librosa, pystoi, pesq, webdataset, av, typer, pyarrow, sklearn, opensmile, transformers'
if ! "$PY" -c "$need" 2>/dev/null; then
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/metricaug-site .whl/*.whl
    export PYTHONPATH=/tmp/metricaug-site${PYTHONPATH:+:$PYTHONPATH}
  else
    # every dependency but torch (pip would replace a CUDA torch that does not match the pin)
    deps=$("$PY" - <<'PYEOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(d for d in project["dependencies"] + project["optional-dependencies"]["frontends"]
               if not d.startswith("torch")))
PYEOF
)
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $deps
  fi
  "$PY" -c "$need"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$PY" bench/gpu_check.py "$@"
