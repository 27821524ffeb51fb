#!/usr/bin/env bash
# The whole GPU measurement in one command, for a device machine (see benchmarks/README.md).
#
# Run from the repository root, with .whl/ carried (kornia, kornia_rs and dominate wheels for
# Python 3.12, and optionally the reference as .whl/pix2pix-ref-*.tar):
#     bash benchmarks/run_gpu.sh            # results in $OUT (or /tmp/i2i-gpu-out)
# Environment: BUDGET (seconds for gpu_bench.py, default 420), GPU_BENCH_ARGS (extra arguments),
# RECIPES=0 to skip the second part (the shipped recipes trained on the GPU, then `i2i eval`).
set -uo pipefail
OUT=${OUT:-/tmp/i2i-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

# What the device image lacks: kornia (+ kornia_rs) for i2i, dominate for the reference.
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
# i2i itself (its plugins are found through entry points, so it must be installed), no deps:
# the image's torch stays as it is.
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile -e . >"$OUT/pip.log" 2>&1 \
    || $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile . >>"$OUT/pip.log" 2>&1 \
    || { cat "$OUT/pip.log"; exit 1; }

REF_ARGS=()
REF_TAR=$(ls .whl/pix2pix-ref-*.tar 2>/dev/null | head -1)
if [ -n "${REF_TAR}" ]; then
    mkdir -p /tmp/ref && tar -xf "$REF_TAR" -C /tmp/ref
    # The reference imports wandb at module level but only uses it with --use_wandb.
    mkdir -p /tmp/ref_stub/wandb
    printf 'run = None\ndef init(*a, **k):\n    raise RuntimeError("wandb stub")\nclass Image:\n    pass\n' >/tmp/ref_stub/wandb/__init__.py
    export PYTHONPATH=$PYTHONPATH:/tmp/ref_stub
    REF_ARGS=(--reference /tmp/ref/pix2pix-ref)
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc; } >"$OUT/machine.txt" 2>&1
$PY benchmarks/gpu_bench.py --json "$OUT/gpu.json" --budget "${BUDGET:-420}" "${REF_ARGS[@]}" ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu.log"

# The shipped recipes on the GPU, each capped in time: the main job as it ships, and longer
# runs of the two denoisers (the "scale it up on a GPU" settings, shortened to fit).
if [ "${RECIPES:-1}" = 1 ]; then
    T=/tmp/i2i-gpu-recipes; rm -rf "$T"; mkdir -p "$T"
    recipe() {  # NAME SECONDS RECIPE [--set ...]
        local name=$1 secs=$2; shift 2
        local t0=$SECONDS
        echo "== $name: i2i run $* (cap ${secs}s; SIGINT at the cap checkpoints and stops)"
        timeout -s INT -k 20 "$secs" $PY -m i2i run "$@" --quiet --out "$T/$name" 2>&1 | tail -n 6
        echo "== $name: $((SECONDS - t0)) s wall"
        $PY -m i2i eval "$T/$name" 2>&1 | tail -n 12
    }
    {
        recipe gray2color 60 recipes/gray2color.toml
        recipe gray2color_long 75 recipes/gray2color.toml --set train.steps=4000 --set train.batch_size=32
        recipe dncnn_long 100 recipes/denoise-dncnn.toml --set train.steps=8000 --set train.batch_size=64 --set data.size=64
    } 2>&1 | tee "$OUT/recipes.log"
fi
