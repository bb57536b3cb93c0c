#!/usr/bin/env bash
# The GPU checks, in one call on a machine with an NVIDIA GPU (no Rust needed): the binaries come
# from `bash scripts/build-gpu-tests.sh` (.gpu/, carried with the call). Writes every log under $OUT
# (default ./gpu-out) and prints a summary table last.
#
#   bash scripts/gpu-check.sh            # DEADLINE=570 (seconds): no step starts that could end later
#
# 1. tests/suite/cuda.rs: GPU vs CPU for the operators, plain fits (both stopping rules), every fit option
#    (bounds, conservative, both, x0, per-row missing data alone and with the others, zero-filling,
#    progress), sample_mask, out_cell_ids, from_links; determinism at B = 1 and 64; the GPU's bits
#    equal to the CPU's (operators, fits, resample; f32 and f64; B = 1, 3, 8, 33, 257), with the CG's
#    iterations replayed as CUDA graphs; should one fail, again without graphs and then without the
#    lane groups of u·M as well.
# 2. The card's device-to-device copy rate (PyTorch, CUDA events): the bandwidth the floors are
#    taken at (the bench prints iter_bytes and setup_bytes).
# 3. Issue 15 (construction and batched values on the device): builds of the paper patch (N = 65 536,
#    level 20, npt 22; with its 14-iteration fit), of N = 10⁷ (with 30 iterations at B = 1), of
#    N = 10⁸ (level 14; host peak RSS) and of a 10⁶-point grid (its areas estimated on the host);
#    B = 64 and 256 fits (setup, resample); the reference on the same card when .gpu/ref holds it
#    (build-gpu-tests.sh puts it there). Should the device construction fail, the rest runs with the
#    host stages (HPSF_HOST_CONSTRUCTION=1) so that the other figures still come back.
# 4. Issue 16 (the iteration): N = 1e6, level 12, npt 9: f32/f64 × B = 1/8 (100 iterations), with
#    per-row gaps (B = 8, ~25 % missing), B = 64 (30 iterations); f32 B = 1 again without CUDA graphs
#    (HPSF_CUDA_GRAPHS=0) and with a thread per cell in u·M (HPSF_CUDA_M_GROUPS=0); the Nsight
#    Compute tables of the iteration's kernels at N = 1e7, B = 1 and N = 1e6, B = 64 (when ncu
#    reads the counters); the
#    constrained fits (B = 1 and 4; B = 1 also without graphs: many short CGs, each recorded once);
#    the bit-for-bit test with u·M's lane groups forced to 4, 8 and 32 lanes.
# 5. compute-sanitizer memcheck on the parity tests, racecheck on the determinism test, synccheck on
#    the bit-for-bit test.
# 6. The same benchmarks on the host's cores (issue 15's CPU setup at B = 64, blocks kept or not),
#    issue 17's 4 ranks against 4 threads (scripts/mpi-node-check.sh, N = 1e7), and the CPU suites
#    (solver, constrained, invariants) built with the cuda feature.
# Order: the most valuable first; each step has a time limit, cut to what is left before DEADLINE
# (a step with less than 15 s left is skipped and says so), so the summary always comes back.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
DEADLINE=${DEADLINE:-570}
mkdir -p "$OUT"
G=.gpu
summary=()
start=$(date +%s)
run() { # name, time limit (s), command...
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE - ($(date +%s) - start) ))
  if [ "$left" -lt 15 ]; then
    summary+=("$(printf '%-34s skipped: %d s left before the deadline' "$name" "$left")")
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s%N)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))  # (no bc on the GPU machines)
  summary+=("$(printf '%-34s rc=%-3s %5d.%01d s (limit %d)' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$limit")")
  return 0
}
BENCH="$G/bench --level 12 --npt 9"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv > "$OUT/gpu.txt" 2>&1
run test-cuda 240 $G/test-suite cuda:: --nocapture --test-threads=1
# should a test fail, tell the new parts apart at once: the same tests without CUDA graphs, then with
# a thread per cell in u·M as well
if grep -q 'FAILED\|panicked' "$OUT/test-cuda.log"; then
  run test-cuda-no-graphs 150 env HPSF_CUDA_GRAPHS=0 $G/test-suite cuda:: --nocapture --test-threads=1
  run test-cuda-no-graphs-groups 150 env HPSF_CUDA_GRAPHS=0 HPSF_CUDA_M_GROUPS=0 $G/test-suite cuda:: --nocapture \
      --test-threads=1
fi
run copy-rate 40 python3 -c '
import torch
x = torch.empty(1 << 31, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
best = 1e9
for _ in range(10):
    a.record(); y.copy_(x); b.record(); torch.cuda.synchronize(); best = min(best, a.elapsed_time(b))
print("{\"copy_gbs\": %.1f, \"bytes\": %d, \"ms\": %.3f}" % (2 * x.numel() / best / 1e6, 2 * x.numel(), best))'
run bench-patch 60 $G/bench --n 65536 --level 20 --npt 22 --dtype f32 --iters 14 --reps 5 --device cuda:0
run bench-1e7-b1 90 $BENCH --n 1e7 --dtype f32 --iters 30 --reps 2 --device cuda:0
# the device construction has never run before: if it fails, the host stages give the other figures
if ! grep -q '"build_s"' "$OUT/bench-patch.log"; then
  export HPSF_HOST_CONSTRUCTION=1
  run bench-patch-host 60 $G/bench --n 65536 --level 20 --npt 22 --dtype f32 --iters 14 --reps 5 --device cuda:0
fi
run bench-f32-b64 120 $BENCH --n 1e6 --dtype f32 --batch 64 --iters 30 --reps 2 --device cuda:0
for dt in f32 f64; do
  for b in 1 8; do
    run "bench-$dt-b$b" 120 $BENCH --n 1e6 --dtype $dt --batch $b --iters 100 --reps 3 --device cuda:0
  done
done
run bench-f32-b1-no-graphs 120 env HPSF_CUDA_GRAPHS=0 $BENCH --n 1e6 --dtype f32 --iters 100 --reps 3 --device cuda:0
run bench-f32-b1-no-groups 120 env HPSF_CUDA_M_GROUPS=0 $BENCH --n 1e6 --dtype f32 --iters 100 --reps 3 --device cuda:0
if [ -d $G/ref/wheels ] && command -v python3 >/dev/null; then
  python3 -m pip install --no-deps -q --target /tmp/hpsf-ref-site $G/ref/wheels/*.whl > "$OUT/ref-install.log" 2>&1
  run reference 240 env PYTHONPATH=/tmp/hpsf-ref-site python3 $G/ref/ref_gpu.py \
      65536,20,22,f32,1,14,3 1e6,12,9,f32,64,30,1
fi
run bench-f32-b256 120 $BENCH --n 1e6 --dtype f32 --batch 256 --iters 5 --reps 2 --device cuda:0
run bench-1e8-build 150 $G/bench --n 1e8 --level 14 --npt 9 --dtype f32 --iters 0 --reps 1 --device cuda:0
# gridded samples: their areas are estimated from the spacing, on the host (area_s)
run bench-grid-build 60 $BENCH --n 1e6 --dtype f32 --iters 0 --reps 2 --grid --device cuda:0
for dt in f32 f64; do
  run "bench-$dt-b8-gaps" 120 $BENCH --n 1e6 --dtype $dt --batch 8 --iters 100 --reps 3 --gaps 0.3 --device cuda:0
done
if command -v ncu >/dev/null; then
  # the kernels of the 30-iteration fit's first iterations (the setup's products come first)
  run ncu-1e7-b1 150 ncu --clock-control none --kernel-name regex:'mt_product|m_product|cg_update|cg_direction|tree_stage' \
      --launch-skip 24 --launch-count 14 $BENCH --n 1e7 --dtype f32 --iters 30 --reps 1 --device cuda:0
fi
run bench-constrained-b1 120 $G/bench --n 1e6 --level 12 --dtype f32 --iters 0 --constrained --device cuda:0
run bench-constrained-b1-no-graphs 120 env HPSF_CUDA_GRAPHS=0 $G/bench --n 1e6 --level 12 --dtype f32 --iters 0 \
    --constrained --device cuda:0
run bench-constrained-b4 120 $G/bench --n 1e6 --level 12 --dtype f32 --iters 0 --constrained --batch 4 --device cuda:0
# every group size of u·M's lane groups (the default takes one, from the mean links per cell)
for g in 4 8 32; do
  run "test-cuda-groups-$g" 60 env HPSF_CUDA_M_GROUPS=$g $G/test-suite cuda::gpu_and_cpu_agree_bit_for_bit_f64 \
      --nocapture --test-threads=1
done
if command -v compute-sanitizer >/dev/null; then
  run memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test-suite --test-threads=1 \
      cuda::every_fit_option_on_the_gpu_matches_the_cpu_f64 cuda::masks_restricted_output cuda::gpu_construction_equals cuda::batched_layouts \
      cuda::gpu_spacing_areas cuda::gpu_and_cpu_agree_bit_for_bit_f32
  run racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 9 $G/test-suite --test-threads=1 \
      cuda::gpu_results_are_deterministic
  run synccheck 90 compute-sanitizer --tool synccheck --error-exitcode 9 $G/test-suite --test-threads=1 \
      cuda::gpu_and_cpu_agree_bit_for_bit_f32
fi
if command -v ncu >/dev/null; then
  # the same at B = 64 (where one gathered index serves 64 values)
  run ncu-1e6-b64 120 ncu --clock-control none --kernel-name regex:'mt_product|m_product|cg_update|cg_direction|tree_stage' \
      --launch-skip 24 --launch-count 7 $BENCH --n 1e6 --dtype f32 --batch 64 --iters 8 --reps 1 --device cuda:0
fi
run bench-cpu-f32-b64 90 $BENCH --n 1e6 --dtype f32 --batch 64 --iters 5 --reps 2
# the same with the blocks kept between calls (the second of two calls reuses the first's)
run bench-cpu-f32-b64-kept 120 $BENCH --n 1e6 --dtype f32 --batch 64 --iters 5 --reps 2 --keep-blocks
# issue 17: 4 ranks against 4 threads on the same cores (its own table, mpi-node.log)
run mpi-node 180 env OUT="$OUT/mpi" bash scripts/mpi-node-check.sh
for dt in f32 f64; do
  for b in 1 8; do
    run "bench-cpu-$dt-b$b" 60 $BENCH --n 1e6 --dtype $dt --batch $b --iters 20 --reps 2
  done
done
run test-solver 120 $G/test-suite solver::
run test-constrained 120 $G/test-suite constrained::
run test-invariants 120 $G/test-suite invariants::
grep -h "test result\|SKIP\|panicked" "$OUT"/test-*.log > "$OUT/tests-summary.txt" 2>&1
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.log "$OUT"/racecheck.log "$OUT"/synccheck.log >> "$OUT/tests-summary.txt" 2>&1
echo "== $(cat "$OUT/gpu.txt" | tail -1)"
echo "== binaries of $(head -1 $G/REVISION 2>/dev/null || echo 'an unknown revision (no .gpu/REVISION)')$(grep -c modified: $G/REVISION 2>/dev/null | sed 's/^0$//; s/^[1-9].*/ (with uncommitted changes)/')"
printf '%s\n' "${summary[@]}"
cat "$OUT/tests-summary.txt"
for f in "$OUT"/bench-*.log; do
  printf '%-26s ' "$(basename "$f" .log)"
  grep -o '"iter_ms": [0-9.]*\|"build_s": [0-9.]*\|"area_s": [0-9.]*\|"setup_s": [0-9.]*\|"fit": "[a-z+]*"\|"fit_s": [0-9.]*\|"iterations": [0-9]*\|"resample_ms": [0-9.]*\|"host_bytes_per_sample": [0-9.]*\|"device_bytes_per_sample": [0-9.]*\|"peak_rss_mb": [0-9.]*\|"iter_bytes": [0-9]*\|"setup_bytes": [0-9]*\|"cuda_graphs": \[[0-9, ]*\]' "$f" | tr '\n' ' '
  echo
done
[ -f "$OUT/copy-rate.log" ] && echo "== device copy rate: $(tail -1 "$OUT/copy-rate.log")"
if [ -f "$OUT/mpi-node.log" ]; then
  echo "== issue 17 on this host's cores (scripts/mpi-node-check.sh)"
  tail -12 "$OUT/mpi-node.log"
fi
for f in "$OUT"/ncu-*.log; do
  [ -f "$f" ] || continue
  echo "== $(basename "$f" .log)"
  grep -E '^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|==ERR|==WARNING' "$f" | head -80
done
if [ -f "$OUT/reference.log" ]; then
  echo "== reference (healpix-resample on the same card)"
  grep '^{' "$OUT/reference.log"
fi
