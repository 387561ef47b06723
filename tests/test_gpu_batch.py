"""The transfer path on a GPU: packed bytes cross, padded views are made on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import hetload as hl

pytestmark = pytest.mark.gpu


def _samples(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        nv = int(rng.integers(0, 300))
        out.append(
            {
                "verts": rng.standard_normal((nv, 3)).astype(np.float32),
                "faces": rng.integers(0, max(nv, 1), size=(2 * nv, 3)),
                "label": i,
            }
        )
    return out


def test_to_cuda_keeps_host_max_len_and_matches_cpu_views():
    batch = hl.collate(_samples(9))
    gpu = batch.pin_memory().to("cuda", non_blocking=True)
    assert gpu.verts.values.is_cuda and gpu.verts._max_len == batch.verts.max_len
    # the faces' index_base is the verts' moved offsets: one copy of those numbers
    assert gpu.faces.index_base is gpu.verts.offsets
    assert torch.equal(gpu.verts.padded().cpu(), batch.verts.padded())
    assert torch.equal(gpu.verts.mask.cpu(), batch.verts.mask)
    assert torch.equal(gpu.faces.padded().cpu(), batch.faces.padded())


def test_dataloader_pin_memory_delivers_pinned_hetero_batches():
    loader = DataLoader(_samples(12), batch_size=4, collate_fn=hl.collate, pin_memory=True)
    for batch in loader:
        assert isinstance(batch, hl.HeteroBatch)
        assert batch.verts.is_pinned() and batch.label.is_pinned()
