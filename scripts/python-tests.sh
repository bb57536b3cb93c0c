#!/usr/bin/env bash
# The Python package (python/: PyO3 + numpy, built by maturin): installed into .venv-py (git-ignored)
# with `pip install ./python[test]` — the one command the README gives — and tested with pytest
# against the reference's golden cases (python/tests). Its Rust build goes to target/python.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-py/bin/python ]; then
  python3 -m venv .venv-py
fi
export CARGO_TARGET_DIR=$PWD/target/python
.venv-py/bin/pip install -q --upgrade pip >/dev/null
.venv-py/bin/pip install -q "./python[test]"
# from outside the source tree, so that the installed package is the one imported
(cd python/tests && ../../.venv-py/bin/python -m pytest -q -p no:cacheprovider .)
