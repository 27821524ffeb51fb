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
PY=${PYTHON:-python3}

# Before anything else: a GPU this Python's torch can use, and the wheels when it lacks kornia.
if ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' >/dev/null 2>&1; then
    echo "run_gpu.sh: no CUDA GPU here; this script measures a GPU (see benchmarks/README.md)" >&2
    exit 1
fi
WHEELS=$(ls .whl/*.whl 2>/dev/null)
NEEDS="import kornia"  # i2i's; dominate is the reference's, needed when it travels too
if ls .whl/pix2pix-ref-*.tar >/dev/null 2>&1; then NEEDS="import kornia, dominate"; fi
if [ -z "$WHEELS" ] && ! $PY -c "$NEEDS" >/dev/null 2>&1; then
    echo "run_gpu.sh: .whl/ holds no wheels; make them with the command in benchmarks/README.md" >&2
    exit 1
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# What the device image lacks: kornia (+ kornia_rs) for i2i, dominate for the reference.
if [ -n "$WHEELS" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
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
STATUS=${PIPESTATUS[0]}
if [ "$STATUS" != 0 ]; then  # no device after all, a bad GPU_BENCH_ARGS, or nothing measured: no recipes on the CPU
    echo "run_gpu.sh: gpu_bench.py failed (status $STATUS); stopping (see $OUT/gpu.log)" >&2
    exit "$STATUS"
fi

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
