#!/usr/bin/env bash
# Installs what the `cuda` feature needs to BUILD (no GPU needed): the CUDA 13.0 compiler, headers and
# static runtime from PyPI into .venv-cuda, and libclang for bindgen. Idempotent. Prints the
# CUDA_HOME to use on its last line.
#
#   eval "$(bash scripts/setup-cuda.sh | tail -1)"    # sets CUDA_HOME in the current shell
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HPSF_CUDA_VENV:-$PWD/.venv-cuda}
PY=${PYTHON:-python3}
PKGS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-cccl==13.0.85)

cuda_home() { "$VENV/bin/python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13"))'; }

if [ ! -x "$VENV/bin/python" ] || [ ! -x "$(cuda_home 2>/dev/null)/bin/nvcc" ]; then
  echo "setup-cuda: installing nvcc 13.0 from PyPI into $VENV" >&2
  "$PY" -m venv "$VENV"
  for attempt in 1 2 3; do
    "$VENV/bin/pip" install --disable-pip-version-check -q "${PKGS[@]}" && break
    echo "setup-cuda: pip failed (attempt $attempt), retrying" >&2; sleep 5
  done
fi
CUDA_HOME=$(cuda_home)
"$CUDA_HOME/bin/nvcc" --version | tail -1 >&2

if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && [ -z "${LIBCLANG_PATH:-}" ]; then
  echo "setup-cuda: installing libclang-dev (for bindgen)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -qq libclang-dev >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libclang-dev >/dev/null; }
fi
echo "export CUDA_HOME=$CUDA_HOME"
