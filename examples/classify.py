"""Train a small point-cloud classifier on class-per-folder meshes, from the folder or from shards.

    hetload demo-data demo
    python examples/classify.py demo/meshes --steps 200                 # straight from OBJ / PLY
    hetload preprocess demo/meshes shards --labels folder --workers 2
    python examples/classify.py shards --steps 200                      # from binary shards
    python examples/classify.py shards --stream --steps 200             # streamed (ShardStream)
    python examples/classify.py demo/modelnet --modelnet                # ModelNet layout (.off)

Labels, keys and class names come through the public API only: ``MeshFolder(labels="folder")``
/ ``ModelNet`` number the class folders; shards written with ``--labels folder`` return the
same ``label`` and ``key`` and record ``classes`` in their index.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import hetload as hl
from hetload import transforms as T


class PointNetLite(nn.Module):
    """A shared per-point MLP, a max over each cloud's points, a linear head.

    Works on the packed view: ``points [sum N_i, 3]`` and ``offsets int64 [B+1]``.
    """

    def __init__(self, classes: int, width: int = 64) -> None:
        super().__init__()
        self.point = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Linear(width, classes)

    def forward(self, points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        features = self.point(points)
        # the max over each cloud: pad with -inf on the fly (hetload's op has autograd)
        padded = hl.ops.packed_to_padded(features, offsets, fill=float("-inf"))
        return self.head(padded.amax(dim=1))


def augmentation(points: int) -> T.Compose:
    steps = [T.SamplePoints(points, with_normals=False), T.NormalizeUnitSphere()]
    return T.Compose([*steps, T.RandomRotation("z")])


def loader_for(args: argparse.Namespace):
    """``(loader, dataset or stream, sampler or None)``; all three sources yield HeteroBatches
    with ``label`` and ``key``, and know their ``classes``."""
    augment = augmentation(args.points)
    if (args.source / "index.json").is_file() and args.stream:
        # iterable: batches cut on the sizes after SamplePoints, augmented just before collate
        stream = hl.data.ShardStream(
            args.source, max_tokens=args.max_tokens, seed=args.seed, transform=augment
        )
        return DataLoader(stream, batch_size=None, num_workers=args.workers), stream, None
    if (args.source / "index.json").is_file():
        ds = hl.data.ShardDataset(args.source, transform=augment, seed=args.seed)
    elif args.modelnet:
        ds = hl.data.ModelNet(args.source, "train", transform=augment, seed=args.seed)
    else:
        ds = hl.data.MeshFolder(args.source, labels="folder", transform=augment, seed=args.seed)
    # ds.sizes follow SamplePoints (out_size), so the budget counts sampled points
    sampler = hl.samplers.BucketBatchSampler(ds.sizes, max_tokens=args.max_tokens, seed=args.seed)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=hl.collate, num_workers=args.workers)
    return loader, ds, sampler


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a class-per-folder root, or a shard folder")
    parser.add_argument("--modelnet", action="store_true", help="source is a ModelNet root")
    parser.add_argument("--stream", action="store_true", help="stream the shards (ShardStream)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--points", type=int, default=256, help="points sampled per mesh")
    parser.add_argument("--max-tokens", type=int, default=8192, help="points per batch")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    loader, ds, sampler = loader_for(args)
    if not ds.classes:
        raise SystemExit(f"{args.source} has no classes (shards: preprocess with --labels folder)")
    model = PointNetLite(len(ds.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    step, epoch, loss = 0, 0, torch.tensor(float("nan"))
    while step < args.steps:
        if sampler is not None:
            sampler.set_epoch(epoch)
        ds.set_epoch(epoch)  # fresh augmentations (and, for a stream, shard order) every epoch
        for batch in loader:
            logits = model(batch.verts.values, batch.verts.offsets)
            loss = nn.functional.cross_entropy(logits, batch.label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == args.steps:
                accuracy = (logits.argmax(1) == batch.label).float().mean()
                print(f"step {step}: loss {loss.item():.3f}, batch accuracy {accuracy:.2f}")
            if step == args.steps:
                break
        epoch += 1
    return loss.item()


if __name__ == "__main__":
    main()
