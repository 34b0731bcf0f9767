#!/usr/bin/env bash
# The GPU checks we run on a lent GPU machine, in one go (see BUILD_NOTES.md):
# the image's python3 has JAX with CUDA, flax, optax, orbax and PyTorch; the
# corpus must be at data/jaychou/origin.txt (git-ignored). Figures and logs go
# to ${OUT:-/tmp/gpu_out}.
set -u
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUTF8=1 PYTHONUNBUFFERED=1
nvidia-smi -L 2>&1 | tee "$out/device.txt"
python3 -c 'import jax, flax, optax, orbax.checkpoint as o, torch; print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "optax", optax.__version__, "orbax", o.__version__, "torch", torch.__version__)' 2>&1 | tee -a "$out/device.txt"
timeout 300 python3 -m experiments.benchmark --json --vs_torch \
  --configs=original,large --compilation_cache="$out/xla_cache" 2>&1 | tee "$out/benchmark.txt"
timeout 120 python3 -m experiments.train --flagfile=experiments/lstm.flags \
  --num_devices=1 --num_epochs=2 --workdir="$out/run" --compilation_cache="$out/xla_cache" 2>&1 \
  | tr '\r' '\n' | grep -v 'batch/s' | tee "$out/train.txt"
timeout 60 python3 -m experiments.sample --workdir="$out/run" --seed=从前 --length=100 --nonewlines \
  --compilation_cache="$out/xla_cache" 2>&1 | tee -a "$out/train.txt"
timeout 110 python3 -m pytest -q -x -p no:cacheprovider tests/test_model.py tests/test_training.py \
  tests/test_sampling.py tests/test_trainer.py 2>&1 | tail -15 | tee "$out/pytest.txt"
rm -rf "$out/xla_cache" "$out/run"
