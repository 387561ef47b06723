"""``hetload build-ext``: rebuild the compiled kernels from ``cuda/`` in place, then report which
implementation serves each device.

For a user who installed hetload from a source checkout (``pip install -e``) and later got a
compiler or a CUDA toolkit: it reruns ``setup.py build_ext --inplace`` (the same build as the
install, same defaults: ``CUDA_HOME=/usr/local/cuda`` when present, ``TORCH_CUDA_ARCH_LIST`` of
the visible GPU or A100/H100 without one). The report comes from a fresh interpreter, since this
one may already hold the old modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hetload.cli._table import format_table

_REPORT = (
    "import json, torch, hetload.ops as o;"
    "print(json.dumps({'status': o.extension_status(),"
    " 'backend': {d: o.backend(d) for d in ('cpu', 'cuda')},"
    " 'cuda_available': torch.cuda.is_available()}))"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-ext",
        help="rebuild the compiled packed<->padded kernels in place and report the backends",
        description=(
            "Rebuild the compiled kernels from cuda/ in place (setup.py build_ext --inplace, "
            "as the install does: CUDA_HOME defaults to /usr/local/cuda, TORCH_CUDA_ARCH_LIST "
            "to the visible GPU, else A100 + H100), then report which implementation serves "
            "each device. Needs a source checkout (pip install -e). See the README section "
            "'Compiled kernels'."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="only report, build nothing")
    mode.add_argument(
        "--check",
        action="store_true",
        help="only report; exit 1 unless every part this machine can build is built and loads",
    )
    parser.add_argument("--force", action="store_true", help="recompile even if up to date")
    parser.set_defaults(func=run)


def source_root() -> Path | None:
    """The checkout hetload runs from, if it has the kernel sources (editable installs)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "setup.py").is_file() and (root / "cuda" / "pad_cpu.cpp").is_file():
        return root
    return None


def buildable() -> dict[str, str | None]:
    """Per part, ``None`` if this machine can build it, else why not."""
    import torch

    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    nvcc = shutil.which("nvcc") or shutil.which("nvcc", path=str(Path(cuda_home, "bin")))
    cpu = None if shutil.which(os.environ.get("CXX", "c++")) else "no C++ compiler"
    if cpu is not None:
        cuda = cpu
    elif torch.version.cuda is None:
        cuda = f"torch {torch.__version__} has no CUDA"
    else:
        cuda = None if nvcc else "nvcc not found (install the CUDA toolkit or set CUDA_HOME)"
    return {"cpu": cpu, "cuda": cuda}


def rebuild(root: Path, force: bool) -> int:
    """``setup.py build_ext --inplace`` in ``root``; a part that fails to compile fails it."""
    command = [sys.executable, "setup.py", "build_ext", "--inplace", *(["--force"] * force)]
    env = {**os.environ, "HETLOAD_REQUIRE_EXTENSION": "1"}
    print(f"building in {root}: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, cwd=root, env=env).returncode


def report() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _REPORT], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    if not (args.status or args.check):
        root = source_root()
        if root is None:
            raise RuntimeError(
                "the kernel sources are not installed with this copy of hetload; rebuild from a "
                "source checkout: pip install --no-build-isolation --no-deps --force-reinstall -e ."
            )
        if rebuild(root, args.force) != 0:
            print("hetload build-ext: the build failed (see above)", file=sys.stderr)
            return 1
    state = report()
    can_build = buildable()
    rows = [
        (device, state["backend"][device], state["status"][device], can_build[device] or "yes")
        for device in ("cpu", "cuda")
    ]
    print(format_table(["device", "backend", "compiled module", "buildable here"], rows))
    if not state["cuda_available"]:
        print("(no CUDA device visible: the CUDA kernels are built but cannot run here)")
    if args.check:
        missing = [
            device
            for device in ("cpu", "cuda")
            if can_build[device] is None and state["backend"][device] != "compiled"
        ]
        if missing:
            print(f"hetload build-ext: not built although buildable: {', '.join(missing)}")
            return 1
    return 0
