#!/usr/bin/env bash
# The distributed tests (feature `mpi`): tests/mpi.rs on 1, 2, 3 and 4 ranks of one machine
# (--oversubscribe: more ranks than cores). As root, OpenMPI needs its allow-run-as-root variables.
set -euo pipefail
cd "$(dirname "$0")/.."
exe=$(cargo test --release --features mpi --test mpi --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "mpi":
        print(m["executable"])' | tail -1)
[ -x "$exe" ] || { echo "mpi-tests: the test binary was not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for np in 1 2 3 4; do
  echo "== tests/mpi.rs on $np rank(s)"
  # a hang is a failure too
  timeout 300 mpirun --oversubscribe -np "$np" "$exe"
done
