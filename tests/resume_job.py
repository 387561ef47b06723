"""A training loop over ``build_loader``, run as its own process by ``test_config_resume.py``.

    python resume_job.py CONFIG.json WORKDIR [--block-at EPOCH:STEP]

Each batch taken is logged (one fsynced JSON line: epoch, step, keys, digest of the values),
then the loader's ``state_dict`` is checkpointed (written to a temp name, renamed). With
``--block-at`` the loop stops for good after logging that batch and before checkpointing it,
so the test can ``kill -9`` the whole process group there, with workers still prefetching. A
checkpoint present in WORKDIR is resumed from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from hetload.config import build_loader

EPOCHS = 2


def digest(batch) -> str:
    h = hashlib.sha256()
    for name in sorted(batch.keys()):
        field = batch[name]
        if isinstance(field, list):
            h.update(repr(field).encode())
            continue
        for tensor in (field.values, field.offsets) if hasattr(field, "offsets") else (field,):
            h.update(name.encode() + tensor.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run(config: dict, workdir: Path, block_at: tuple[int, int] | None = None) -> list[dict]:
    """The loop; returns the log lines it wrote."""
    log_path, ckpt = workdir / "log.jsonl", workdir / "state.pt"
    loader = build_loader(config)
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        loader.load_state_dict(state)
        start = state["epoch"]
    lines = []
    with log_path.open("a") as log:
        for epoch in range(start, EPOCHS):
            loader.set_epoch(epoch)
            for batch in loader:
                state = loader.state_dict()
                line = {
                    "epoch": epoch,
                    "step": state["step"],
                    "keys": list(batch.key),
                    "digest": digest(batch),
                    "repeat": batch["is_repeat"].tolist()
                    if "is_repeat" in set(batch.keys())
                    else None,
                }
                log.write(json.dumps(line) + "\n")
                log.flush()
                os.fsync(log.fileno())
                lines.append(line)
                if block_at == (epoch, state["step"]):
                    (workdir / "blocked").touch()
                    time.sleep(600)  # the test kills the process group here
                tmp = workdir / "state.pt.tmp"
                torch.save(state, tmp)
                os.replace(tmp, ckpt)
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--block-at", default=None)
    args = parser.parse_args(argv)
    block = None
    if args.block_at:
        epoch, step = args.block_at.split(":")
        block = (int(epoch), int(step))
    run(json.loads(args.config.read_text()), args.workdir, block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
