"""Train a small per-point segmenter on labelled point clouds (PLY with a per-vertex `label`).

    hetload demo-data demo
    python examples/segment.py demo/scans --steps 200

A PLY vertex property named ``label`` is read as the ragged field ``vertex_label`` (``label``
is the per-sample class), one row per point, aligned with ``verts``; it stays aligned through
``Subsample`` and is batched packed like ``verts``, so the loss is one cross-entropy over
``[sum N_i]`` points with no padding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import hetload as hl
from hetload import transforms as T


class PointSegmenter(nn.Module):
    """Per-point features joined with their cloud's max-pooled feature, then per-point logits."""

    def __init__(self, classes: int, width: int = 64) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width))
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, classes))

    def forward(self, points: torch.Tensor, verts: hl.Ragged) -> torch.Tensor:
        """``points [sum N_i, 3]`` -> logits ``[sum N_i, classes]``; ``verts`` gives the layout."""
        local = self.local(points)
        padded = hl.ops.packed_to_padded(local, verts.offsets, fill=float("-inf"))
        pooled = padded.amax(dim=1)  # [B, width]
        return self.head(torch.cat([local, pooled[verts.batch_idx]], dim=1))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a folder of labelled PLY point clouds")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--points", type=int, default=512, help="points kept per cloud")
    parser.add_argument("--max-tokens", type=int, default=8192, help="points per batch")
    parser.add_argument("--classes", type=int, default=8, help="per-point classes")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    augment = T.Compose([T.Subsample(args.points), T.Center(), T.RandomRotation("z")])
    ds = hl.data.MeshFolder(args.source, transform=augment, seed=args.seed)
    sampler = hl.samplers.BucketBatchSampler(ds.sizes, max_tokens=args.max_tokens, seed=args.seed)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=hl.collate, num_workers=args.workers)
    model = PointSegmenter(args.classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    step, epoch, loss = 0, 0, torch.tensor(float("nan"))
    while step < args.steps:
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        for batch in loader:
            target = batch.vertex_label.values.long()  # [sum N_i], aligned with verts.values
            logits = model(batch.verts.values, batch.verts)
            loss = nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == args.steps:
                accuracy = (logits.argmax(1) == target).float().mean()
                print(f"step {step}: loss {loss.item():.3f}, point accuracy {accuracy:.2f}")
            if step == args.steps:
                break
        epoch += 1
    return loss.item()


if __name__ == "__main__":
    main()
