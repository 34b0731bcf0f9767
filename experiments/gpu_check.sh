#!/usr/bin/env bash
# The GPU checks, in one go (about 6 minutes on one H200; BUILD_NOTES.md):
# the tests that hold on a GPU, every benchmark figure, and the costs of the
# sampling step's parts. Run from the repository root:
#
#   bash experiments/gpu_check.sh             # on the GPU machine
#   bash experiments/gpu_check.sh --cpu-dry-run  # the fast parts, on CPU
#
# Everything measured goes to $OUT if set, else ./gpu_check_out/: device.txt
# (versions, devices), pytest.txt, benchmark.txt (its last line is the JSON
# of every figure), loop_costs.txt, summary.txt (what ran, exit codes,
# seconds). The lyrics are read from data/jaychou/origin.txt when present
# (git-ignored: copy it there); else the benchmark uses synthetic text of
# the same vocabulary size. Needs JAX with CUDA, flax, optax, orbax and
# pytest; installs `pip install -e '.[cuda,test]'` only if jax or pytest is
# missing (torch, for --vs_torch, is optional).
set -euo pipefail

dry_run=0
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) dry_run=1 ;;
    *) echo "usage: bash experiments/gpu_check.sh [--cpu-dry-run]" >&2; exit 2 ;;
  esac
done

out=${OUT:-./gpu_check_out}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUTF8=1 PYTHONUNBUFFERED=1
if [[ $dry_run == 1 ]]; then
  export JAX_PLATFORMS=cpu
fi
cache="$out/xla_cache"
summary="$out/summary.txt"
: > "$summary"
corpus=data/jaychou/origin.txt

if ! "$py" -c 'import jax, flax, optax, orbax.checkpoint, pytest' 2>/dev/null; then
  "$py" -m pip install -e '.[cuda,test]'
fi

# step NAME SECONDS COMMAND...: runs with a time limit, output to
# $out/NAME.txt; a failing step is recorded and the next one still runs.
step() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  set +e
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  rc=$?
  set -e
  echo "$name: exit $rc, $(( $(date +%s) - start )) s: $*" | tee -a "$summary"
}

{
  date -u
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi -L 2>&1 || echo 'no nvidia-smi'
  "$py" -c 'import jax, flax, optax; print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "optax", optax.__version__)'
  "$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())' 2>&1 || true
} > "$out/device.txt" 2>&1
cat "$out/device.txt"

# The tests that hold on a GPU: the model, the fused train step against the
# reference (float32 matmuls pinned), training, sampling, the loop-free
# sampler (its HLO has no while but the scans), the mixture step.
tests=(tests/models/test_fused.py tests/models/test_model.py
       tests/training/test_training.py tests/generation/test_sampling.py
       tests/generation/test_sampler_hlo.py
       tests/generation/test_decode_draws.py
       tests/scoring/test_ngram_search.py tests/scoring/test_mixture_step.py)
if [[ $dry_run == 1 ]]; then
  tests=(tests/scoring/test_ngram_search.py
         tests/generation/test_decode_draws.py)
fi
step pytest 150 "$py" -m pytest -q -p no:cacheprovider -m 'not slow' \
  "${tests[@]}"

if [[ $dry_run == 1 ]]; then
  step loop_costs 120 "$py" -m experiments.loop_costs --json --repeats=2 \
    --steps=50 --parts=search --corpus="$corpus"
  step benchmark 300 "$py" -m experiments.benchmark --json --repeats=1 \
    --seconds=0.1 --configs=original --first_step=false \
    --compilation_cache="$cache"
else
  step loop_costs 90 "$py" -m experiments.loop_costs --json --repeats=7 \
    --steps=300 --corpus="$corpus"
  step benchmark 230 "$py" -m experiments.benchmark --json --vs_torch \
    --configs=original,large,best --compilation_cache="$cache"
fi
rm -rf "$cache"
tail -n 3 "$out/pytest.txt"
grep -v '^{' "$out/benchmark.txt" | tail -n 6 || true
echo "all output in $out"
# The check fails when a step failed (the figures that ran are kept).
! grep -qv ': exit 0,' "$summary"
