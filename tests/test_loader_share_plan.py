"""build_loader's Loader over a ShardStream shares the plan (ShardStream.share_plan) in the main
process before its DataLoader starts the workers, as the README's many-machines example does by
hand: with a process group, each rank then dry-runs only its own workers."""

from __future__ import annotations

import numpy as np

from hetload.config import build_loader
from hetload.data import ShardStream
from hetload.shards.writer import write_shards


def test_loader_shares_the_stream_plan_before_the_workers_start(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    samples = [{"verts": rng.standard_normal((int(n), 3)).astype(np.float32)} for n in range(1, 13)]
    write_shards(samples, tmp_path, max_count=3)
    calls: list[tuple[int, int]] = []
    original = ShardStream.share_plan

    def spy(self, num_workers: int = 0) -> bool:
        calls.append((num_workers, self.epoch))
        return original(self, num_workers)

    monkeypatch.setattr(ShardStream, "share_plan", spy)
    config = {
        "dataset": {"type": "ShardStream", "urls": str(tmp_path), "fields": ["verts"]},
        "sampler": {"type": "fixed", "batch_size": 4},
        "loader": {"num_workers": 2},
    }
    loader = build_loader(config)
    got = sorted(int(n) for batch in loader for n in batch.verts.lengths.tolist())
    assert got == list(range(1, 13))  # every sample once
    assert calls[0] == (2, 0)  # in the main process, with the worker count, before any batch
    loader.set_epoch(1)
    list(loader)
    assert calls[-1] == (2, 1)
