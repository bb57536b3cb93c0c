#!/usr/bin/env bash
# The Python package (python/: PyO3 + numpy, built by maturin): installed with `pip install
# ./python[test]` — the one command the README gives — and tested with pytest (python/tests)
# against the reference's golden cases, and against the reference package itself in the same
# process: the environment `../shared/reference/setup_ref.sh` makes (.venv-ref, git-ignored; CPU
# torch and healpix-resample 2026.10.2 from PyPI). Where that environment cannot be made, a plain
# .venv-py (git-ignored) is used and the same-process comparison prints SKIP. The Rust build goes
# to target/python.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=../shared/reference/setup_ref.sh
if [ -f "$ref" ] && VENV=$PWD/.venv-ref timeout 900 bash "$ref" >/tmp/hpsf-setup-ref.log 2>&1; then
  venv=.venv-ref
else
  echo "python-tests: the reference's environment could not be made (see /tmp/hpsf-setup-ref.log):" \
    "the same-process comparison will SKIP" >&2
  venv=.venv-py
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
fi
export CARGO_TARGET_DIR=$PWD/target/python
"$venv/bin/pip" install -q --disable-pip-version-check "./python[test]"
# from the tests' folder, so that the installed package is the one imported
(cd python/tests && "../../$venv/bin/python" -m pytest -q -rs -p no:cacheprovider .)
