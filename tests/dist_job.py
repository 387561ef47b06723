"""One rank of a training job for ``tests/test_distributed_harness.py`` (run as a script).

It joins a gloo process group, streams a ShardStream epoch through a DataLoader, all-reduces at
every step (a rank with fewer steps would leave the others waiting: the test's timeout catches
it), logs each batch's sample labels and ``is_repeat``, and writes its state after every step.
With ``--kill-step`` it stops after that step, tells the test (a file) and waits to be killed
with SIGKILL: the kill point is chosen by the test, never by timing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from hetload.data import ShardStream
from hetload.shards.index import ShardIndex


def urls_of(root: Path, scheme: str) -> list[str]:
    index = ShardIndex.load(root)
    paths = [str((root / shard.url).resolve()) for shard in index.shards]
    if scheme == "pipe":
        return [f"pipe:cat {p}" for p in paths]
    return [f"{scheme}://{p}" for p in paths]  # local://: read through fsspec


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--scheme", default="local")
    parser.add_argument("--init", required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--kill-step", type=int, default=-1)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo", init_method=args.init, world_size=args.world, rank=args.rank)
    stream = ShardStream(
        urls_of(args.root, args.scheme),
        index=args.root / "index.json",
        max_tokens=900,
        buffer_size=8,
        seed=5,
    )
    epoch = 0
    if args.resume is not None:
        state = json.loads(args.resume.read_text())
        stream.load_state_dict(state)
        epoch = state["epoch"]
    stream.set_epoch(epoch)
    # one all-gather of the ranks' batch counts; the workers forked below inherit it
    shared = stream.share_plan(args.workers)
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=2 if args.workers else None,
    )
    log = open(args.out / f"rank{args.rank}.jsonl", "a")  # noqa: SIM115
    start = stream.resume_step(args.workers)
    for step, batch in enumerate(loader, start=start):
        together = torch.ones(1)
        dist.all_reduce(together)  # every rank takes this step
        record = {
            "step": step,
            "labels": batch["label"].tolist(),
            "repeat": batch["is_repeat"].tolist(),
            "shared": shared,
        }
        log.write(json.dumps(record) + "\n")
        log.flush()
        state = stream.state_dict(step=step + 1, num_workers=args.workers)
        write_atomic(args.out / f"state{args.rank}.json", json.dumps(state))
        if step == args.kill_step:
            dist.barrier()  # every rank has logged and saved this step
            if args.rank == 0:
                (args.out / "reached").write_text(str(step))
            while True:  # the test kills this process (SIGKILL) now
                time.sleep(0.05)
    dist.barrier()
    (args.out / f"done{args.rank}").write_text("ok")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
