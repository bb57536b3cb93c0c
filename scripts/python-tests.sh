#!/usr/bin/env bash
# The Python package (python/: PyO3 + numpy, built by maturin): a wheel built (`pip wheel`, what
# the README's `pip install ./python` does) and installed with the test extras (xarray, dask,
# netCDF4, xdggs, scipy, pytest), then tested with pytest (python/tests)
# against the reference's golden cases, and against the reference package itself in the same
# process: the environment `../shared/reference/setup_ref.sh` makes (.venv-ref, git-ignored; CPU
# torch and healpix-resample 2026.10.2 from PyPI). Where that environment cannot be made, a plain
# .venv-py (git-ignored) is used and the same-process comparison prints SKIP. The Rust build goes
# to target/python. Exit status 3: no Python environment could be made at all (SKIP); any failure
# to build or test the package fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=../shared/reference/setup_ref.sh
# PIP_NO_COMPILE=0 is pip's --no-compile for the pip calls of the shared script (pip reads the
# variable as the value of its "compile" option: 0 turns byte-compiling off): the reference's
# environment is made in 53 s instead of 82 here
if [ -f "$ref" ] && PIP_NO_COMPILE=0 VENV=$PWD/.venv-ref timeout 900 bash "$ref" >/tmp/hpsf-setup-ref.log 2>&1; then
  venv=.venv-ref
else
  echo "python-tests: the reference's environment could not be made (see /tmp/hpsf-setup-ref.log):" \
    "the same-process comparison will SKIP" >&2
  venv=.venv-py
  # a venv made without ensurepip has a python but no pip: make it again
  [ -x "$venv/bin/pip" ] || { rm -rf "$venv" && python3 -m venv "$venv"; } ||
    { echo "SKIP: the Python package's tests (no python3 -m venv: apt-get install python3-venv)" >&2; exit 3; }
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null ||
    { echo "SKIP: the Python package's tests (pip cannot reach PyPI)" >&2; exit 3; }
fi
export CARGO_TARGET_DIR=$PWD/target/python
# a wheel (what `pip install ./python` builds and installs), then it and the test extras
rm -rf target/python/wheels
"$venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w target/python/wheels ./python
wheel=$(ls target/python/wheels/healpix_psf-*.whl)
echo "python-tests: built $wheel"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
"$venv/bin/pip" install -q --disable-pip-version-check --no-compile "$wheel[test]"
# from the tests' folder, so that the installed package is the one imported
(cd python/tests && "../../$venv/bin/python" -m pytest -q -rs -p no:cacheprovider .)
