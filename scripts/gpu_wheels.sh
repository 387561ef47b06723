#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on a fresh GPU machine (Python 3.12,
# manylinux x86_64, no registry there) into .whl/ at the repository root. Run it here, where
# PyPI is reachable; the GPU run then carries .whl (run tool: carry [".whl"]).
#
#   bash scripts/gpu_wheels.sh            # the default set, pinned to what the project tests with
#   WHEELS_DIR=/tmp/w bash scripts/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${WHEELS_DIR:-.whl}"
mkdir -p "$dest"
python="${PYTHON:-python3}"
# what the GPU image lacks (it has torch, numpy, pyyaml, tqdm, pytest, hypothesis, PyG);
# fpsample is the CPU peer of the FPS benchmark (optional: the benchmark says when it is absent)
packages=(
  "webdataset==1.0.2"
  "braceexpand==0.1.7"
  "trimesh==5.2.0"
  "fpsample==0.3.3"
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
for pkg in "${packages[@]}"; do
  "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$dest" "$pkg"
done
# one version of each package: two would stop the install there
dupes=$(ls "$dest"/*.whl | xargs -n1 basename | cut -d- -f1 | sort | uniq -d)
if [ -n "$dupes" ]; then
  echo "gpu_wheels: more than one wheel of: $dupes (remove the extra ones from $dest)" >&2
  exit 1
fi
du -ch "$dest"/*.whl | tail -1
