"""Compile and run ``scripts/bench_rebase_loops.cpp``: the re-base loops of
``cuda/rebase_loops.h`` (baseline SSE2 and AVX2 builds) against ``memcpy`` of the same bytes, the
measurement behind building the AVX2 copies (BENCHMARKS.md).

    python scripts/bench_rebase_loops.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from torch.utils.cpp_extension import include_paths

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "bench_rebase_loops")
        includes = [f"-I{p}" for p in [str(ROOT / "cuda"), *include_paths()]]
        # the flags setup.py builds the kernels with (CXX_FLAGS), so the loops compile the same
        subprocess.run(
            [os.environ.get("CXX", "c++"), "-O3", "-std=c++17", "-fno-math-errno",
             "-fno-trapping-math", "-DTORCH_TARGET_VERSION=0x020a000000000000", *includes,
             str(ROOT / "scripts" / "bench_rebase_loops.cpp"), "-o", binary],
            check=True,
        )  # fmt: skip
        subprocess.run([binary, str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
