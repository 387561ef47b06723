"""``scripts/bench_collate.py`` times real work: each contender builds the batch ``hl.collate``
builds (same values, re-based faces, offsets), so a ratio in BENCHMARKS.md compares like with
like."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import hetload as hl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_collate


def test_contenders_build_the_same_batch():
    meshes = bench_collate.make_meshes(6, 300, seed=3)
    batch = hl.collate(meshes)
    verts, faces = batch["verts"], batch["faces"]

    out_v, out_f = bench_collate.copies_only(meshes)()
    assert torch.equal(out_v, verts.values) and torch.equal(out_f, faces.values)

    v, f, offsets = bench_collate.fused_unchecked(meshes)()
    assert torch.equal(v, verts.values) and torch.equal(f, faces.values)
    assert torch.equal(offsets[0], verts.offsets) and torch.equal(offsets[1], faces.offsets)

    v, f, o = bench_collate.collate_handwritten(meshes)
    assert torch.equal(v, verts.values) and torch.equal(f, faces.values)
    assert torch.equal(o, verts.offsets)
    # the re-base is real: a later mesh's faces point past the first mesh's rows
    assert int(faces.values[faces.offsets[1] :].min()) >= int(verts.offsets[1])
