#!/usr/bin/env bash
# One shot on a fresh GPU machine (one H200, torch 2.11 cu130, Python 3.12, nvcc 13.0, no
# registry): install the missing packages from the wheels in .whl/, build the kernels against
# that machine's torch, run `pytest -m gpu` and every GPU benchmark, and write ONE results file,
# $OUT/gpu-results.txt (./gpu-results/gpu-results.txt where OUT is unset). Every step has its
# own time limit and the whole run stops starting steps after BUDGET_S (default 470 s), so it
# ends in under 8 minutes whatever hangs.
#
#   bash scripts/gpu_check.sh              # on the GPU machine (run tool: carry [".whl"])
#   bash scripts/gpu_check.sh --dry-run    # anywhere: the same steps on the CPU; what needs a
#                                          # GPU is skipped with a message, the build goes to a
#                                          # temporary folder, benchmarks run tiny on the CPU
#   bash scripts/gpu_check.sh --dry-run --no-build   # also skip compiling (the CI test)
#
# Exit status: 0 when every step that ran passed, 1 otherwise (the results file says which).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

dry=0
build=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --no-build) build=0 ;;
    -h | --help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $arg" >&2; exit 2 ;;
  esac
done

python="${PYTHON:-python3}"
budget="${BUDGET_S:-470}"
deadline=$((SECONDS + budget))
outdir="${OUT:-$root/gpu-results}"
mkdir -p "$outdir"
results="$outdir/gpu-results.txt"
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$work"' EXIT
: >"$results.partial"
failed=()

note() { echo "$*" | tee -a "$results.partial"; }

# run_step NAME LIMIT_S COMMAND...: runs with the smaller of LIMIT_S and the time left, its
# output (stdout + stderr) appended to the results under a header, with status and seconds
run_step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then
    note ""
    note "=== $name: SKIPPED (the ${budget} s budget is spent)"
    failed+=("$name (no time left)")
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  note ""
  note "=== $name (limit ${limit} s)"
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$work/step.log" 2>&1
  local rc=$?
  cat "$work/step.log" >>"$results.partial"
  tail -n 25 "$work/step.log"
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    note "=== $name: ok (${took} s)"
  else
    [ "$rc" -eq 124 ] && note "=== $name: TIMED OUT after ${took} s" ||
      note "=== $name: FAILED with status $rc (${took} s)"
    failed+=("$name")
  fi
  return "$rc"
}

skip_step() {
  note ""
  note "=== $1: skipped: $2"
}

has_gpu=0
if "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  has_gpu=1
fi
if [ "$dry" -eq 0 ] && [ "$has_gpu" -eq 0 ]; then
  echo "gpu_check: no CUDA device visible; use --dry-run to rehearse on the CPU" >&2
  exit 2
fi

note "hetload gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) mode=$([ $dry -eq 1 ] && echo dry-run || echo gpu)"
note "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
run_step "environment" 60 bash -c "
  $python -c 'import sys, torch; print(\"python\", sys.version.split()[0]); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available()); print(\"device\", torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"none\")'
  (command -v nvcc >/dev/null && nvcc --version | tail -2) || echo 'nvcc: not found'
  (command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv) || echo 'nvidia-smi: not found'
  nproc"

# --- 1. packages the machine lacks, from the carried wheels (never from a registry) ---------
site="/tmp/site"
[ "$dry" -eq 1 ] && site="$work/site"
shopt -s nullglob
wheels=("$root"/.whl/*.whl)
shopt -u nullglob
pip_install=("$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir
  --upgrade --target "$site")
if [ "${#wheels[@]}" -gt 0 ] && [ "$dry" -eq 1 ]; then
  # the wheels are for the GPU machine's Python 3.12: install them as for it, into a temporary
  # folder this Python does not import from
  run_step "install wheels (${#wheels[@]} from .whl/, as for cp312)" 90 "${pip_install[@]}" \
    --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "${wheels[@]}"
elif [ "${#wheels[@]}" -gt 0 ]; then
  run_step "install wheels (${#wheels[@]} from .whl/)" 90 "${pip_install[@]}" "${wheels[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
  skip_step "install wheels" "no .whl/*.whl beside the repository (scripts/gpu_wheels.sh makes them)"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
run_step "imports" 60 "$python" -c "
import importlib
missing = []
for name in ('numpy', 'yaml', 'tqdm', 'webdataset', 'trimesh', 'braceexpand', 'pytest', 'hypothesis'):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing.append(f'{name} ({exc})')
print('missing:', ', '.join(missing) if missing else 'none')
import hetload
print('hetload from', hetload.__file__)
raise SystemExit(1 if missing else 0)"

# --- 2. the kernels, built against this machine's torch -------------------------------------
if [ "$build" -eq 0 ]; then
  skip_step "build kernels" "--no-build"
elif [ "$dry" -eq 1 ]; then
  # a rehearsal must not replace the checkout's modules: build into the temporary folder
  run_step "build kernels (into a temporary folder)" 300 env HETLOAD_REQUIRE_EXTENSION=1 \
    "$python" setup.py -q build_ext --build-lib "$work/lib" --build-temp "$work/obj"
else
  # the H200 alone: one architecture compiles in about half the time
  run_step "build kernels" 300 env HETLOAD_REQUIRE_EXTENSION=1 \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="$(nproc)" \
    "$python" setup.py -q build_ext --inplace
fi
run_step "kernel status" 60 "$python" -c "
import hetload as hl, torch
status = hl.ops.extension_status()
for key, text in status.items():
    print(f'{key}: {text}')
ops = ('farthest_point_sample', 'grid_sample', 'sample_surface', 'per_sample_matmul',
       'per_sample_scale', 'jitter_points')
missing = []
for device in ['cpu'] + (['cuda'] if torch.cuda.is_available() else []):
    kinds = {op: hl.ops.library.has_kernel(op, device.upper()) for op in ops}
    print(device, 'packed<->padded:', hl.ops.backend(device), ' '.join(
        f'{op}:' + ('compiled' if has else 'torch') for op, has in kinds.items()))
    missing += [f'{device}:{op}' for op, has in kinds.items() if not has]
if torch.cuda.is_available() and hl.ops.backend('cuda') != 'compiled':
    raise SystemExit('the CUDA kernels do not serve cuda')
if torch.cuda.is_available() and missing:
    raise SystemExit('built kernels missing: ' + ', '.join(missing))"

# --- 3. the GPU tests -------------------------------------------------------------------------
pytest_args=(-q -p no:cacheprovider -m gpu -o addopts="" --hypothesis-profile=ci)
# the files that hold GPU tests (collecting only them keeps the step short)
mapfile -t gpu_files < <(grep -l "pytest.mark.gpu" tests/test_*.py)
if [ "$has_gpu" -eq 1 ]; then
  run_step "pytest -m gpu" 180 "$python" -m pytest "${pytest_args[@]}" "${gpu_files[@]}"
else
  skip_step "pytest -m gpu" "no CUDA device (dry run); checking that the GPU tests collect instead"
  run_step "pytest -m gpu --collect-only" 90 "$python" -m pytest "${pytest_args[@]}" \
    --collect-only "${gpu_files[@]}"
fi

# --- 4. the GPU benchmarks --------------------------------------------------------------------
if [ "$has_gpu" -eq 1 ]; then
  run_step "bench_pad_gpu (packed<->padded vs copy, nested, PyG)" 180 \
    "$python" scripts/bench_pad_gpu.py --device cuda --json "$work/pad.json"
  run_step "bench_device_ops --device cuda" 150 \
    "$python" scripts/bench_device_ops.py --device cuda --batch 64 --points 16384 \
    --faces 16384 --fps 1024 --json "$work/device_ops.json"
else
  skip_step "GPU benchmarks" "no CUDA device (dry run); tiny CPU runs of the same scripts instead"
  run_step "bench_pad_gpu (tiny, cpu)" 120 "$python" scripts/bench_pad_gpu.py --device cpu \
    --batches 4 --dims 3 --dtypes float32 --mean-len 16 --repeats 1 --json "$work/pad.json"
  run_step "bench_device_ops (tiny, cpu)" 120 "$python" scripts/bench_device_ops.py \
    --device cpu --batch 2 --points 64 --faces 64 --fps 8 --surface 16 --repeats 1 \
    --json "$work/device_ops.json"
fi
for f in pad.json device_ops.json; do
  if [ -f "$work/$f" ]; then
    note ""
    note "=== raw: $f"
    cat "$work/$f" >>"$results.partial"
  fi
done

note ""
if [ "${#failed[@]}" -eq 0 ]; then
  note "gpu_check: all steps passed in $SECONDS s"
  status=0
else
  note "gpu_check: FAILED steps: ${failed[*]} ($SECONDS s)"
  status=1
fi
mv "$results.partial" "$results"
echo "gpu_check: results in $results"
exit "$status"
