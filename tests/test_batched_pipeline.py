"""hetload.batched steps on HeteroBatches and a config's ``device.transforms``: aligned fields
follow the kept rows, stale index fields go, a sample's result is the same in any batch, and
bad entries are refused with the entry named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hetload as hl
from hetload.config import ConfigError, build_loader


def _samples(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        nv = int(rng.integers(4, 40))
        verts = rng.normal(size=(nv, 3)).astype(np.float32)
        faces = rng.integers(0, nv, size=(int(rng.integers(1, 30)), 3))
        normals = rng.normal(size=(nv, 3)).astype(np.float32)
        out.append({"verts": verts, "faces": faces, "normals": normals, "key": f"k{i}"})
    return out


def _by_key(batch) -> dict[str, dict[str, torch.Tensor]]:
    fields = {n: v.unbind(local=True) for n, v in batch.items() if isinstance(v, hl.Ragged)}
    return {
        key: {name: items[i] for name, items in fields.items()}
        for i, key in enumerate(batch["key"])
    }


PIPELINES = [
    [
        "Center",
        {"RandomRotation": {"axis": "z"}},
        {"RandomScale": {"anisotropic": True}},
        {"RandomFlip": {"axes": [0, 1]}},
        "NormalizeUnitSphere",
        {"Jitter": {"sigma": 0.02}},
    ],
    [{"FarthestPoints": {"n": 8, "random_start": True}}],
    [{"GridSample": {"grid_size": 0.5}}, {"Serialize": {"order": ["z", "hilbert"]}}],
    [{"SamplePoints": {"n": 16}}, {"GridSample": {"grid_size": 0.3, "mode": "first"}}],
]


@pytest.mark.parametrize("spec", PIPELINES)
def test_a_sample_gets_the_same_result_in_any_batch(spec):
    steps = hl.batched.build(spec)
    samples = _samples(9)
    whole = steps(hl.collate(samples), hl.batched.sample_seeds([s["key"] for s in samples]))
    part = [samples[i] for i in (7, 2, 5)]
    alone = steps(hl.collate(part), hl.batched.sample_seeds([s["key"] for s in part]))
    a, b = _by_key(whole), _by_key(alone)
    for key in b:
        assert a[key].keys() == b[key].keys()
        for name in b[key]:
            if name.startswith("serialized_"):
                continue  # codes carry the sample's position in the batch (PTv3's layout)
            torch.testing.assert_close(a[key][name], b[key][name], rtol=1e-6, atol=1e-6)


def test_kept_rows_follow_the_points_and_faces_are_dropped():
    samples = _samples(3)
    batch = hl.collate(samples)
    out = hl.batched.FarthestPoints(n=5)(batch, hl.batched.sample_seeds(batch["key"]))
    assert "faces" not in out and out["key"] == batch["key"]
    idx = hl.batched.farthest_point_sampling(batch.verts, 5)
    assert torch.equal(out.verts.values, batch.verts.values[idx.values])
    assert torch.equal(out.normals.values, batch.normals.values[idx.values])
    assert out.verts.lengths.tolist() == [5, 5, 5]


def test_grid_sample_and_serialize_add_their_fields():
    batch = hl.collate(_samples(2))
    steps = hl.batched.build([{"GridSample": {"grid_size": 0.4}}, "Serialize"])
    out = steps(batch, hl.batched.sample_seeds(batch["key"]))
    assert out.grid_coord.values.dtype == torch.int64
    assert torch.equal(out.grid_coord.offsets, out.verts.offsets)
    code = out.serialized_code.values
    assert code.shape == (out.verts.values.shape[0], 2)
    # PTv3's layout: the sample index above the curve code, so sorting keeps samples apart
    order = out.serialized_order.values[:, 0]
    assert torch.equal(out.verts.batch_idx[order], out.verts.batch_idx)


def test_sample_points_replaces_the_mesh():
    batch = hl.collate(_samples(2))
    out = hl.batched.SamplePoints(n=10)(batch, hl.batched.sample_seeds(batch["key"]))
    assert set(out.keys()) == {"verts", "normals", "key"}
    assert out.verts.values.shape == (20, 3)
    torch.testing.assert_close(out.normals.values.norm(dim=1), torch.ones(20))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["Spin"], "unknown 'Spin'"),
        ([{"Jitter": {"sigma": -1}}], "sigma, clip >= 0"),
        ([{"GridSample": {"size": 1}}], "GridSample"),
        ([42], "expected 'Name'"),
    ],
)
def test_bad_steps_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        hl.batched.build(spec)


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> Path:
    """A folder of 12 small OBJ meshes (random triangles)."""
    root = tmp_path_factory.mktemp("batched")
    for i, sample in enumerate(_samples(12, seed=2)):
        lines = [f"v {x} {y} {z}" for x, y, z in sample["verts"].tolist()]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in sample["faces"].tolist()]
        (root / f"m{i:02d}.obj").write_text("\n".join(lines) + "\n")
    return root


def _config(root: Path, steps: list) -> dict:
    return {
        "dataset": {"type": "MeshFolder", "root": str(root)},
        "sampler": {"type": "fixed", "batch_size": 4, "shuffle": True, "seed": 5},
        "loader": {"num_workers": 0},
        "device": {"type": "cpu", "transforms": steps, "pad": ["verts"]},
    }


def _keys_carried(meshes: Path) -> bool:
    return "key" in hl.data.MeshFolder(meshes, progress=False)[0]


def test_config_device_transforms_run_on_each_batch(meshes: Path, monkeypatch):
    steps = [{"SamplePoints": {"n": 32}}, "NormalizeUnitSphere", {"FarthestPoints": {"n": 8}}]
    if not _keys_carried(meshes):
        # the seeds come from each sample's "key" (DESIGN: every dataset sample carries one)
        with pytest.raises(ValueError, match="no 'key' field to seed each sample by"):
            next(iter(build_loader(_config(meshes, steps))))
        plain = hl.data.MeshFolder.__getitem__

        def with_key(self, i):
            return {**plain(self, i), "key": self.files[i].stem}

        monkeypatch.setattr(hl.data.MeshFolder, "__getitem__", with_key)
    loader = build_loader(_config(meshes, steps))
    seen = {}
    for batch in loader:
        assert batch.verts.lengths.tolist() == [8] * len(batch)
        assert float(batch.verts.values.norm(dim=1).max()) <= 1 + 1e-5
        assert batch.verts.padded().shape == (len(batch), 8, 3)
        seen.update({k: v for k, v in zip(batch["key"], batch.verts.unbind())})
    # another batch composition (a new shuffle seed), same sampler.seed and epoch: same points
    cfg = _config(meshes, steps)
    cfg["sampler"]["batch_size"] = 3
    for batch in build_loader(cfg):
        for key, points in zip(batch["key"], batch.verts.unbind()):
            torch.testing.assert_close(points, seen[key])


def test_config_refuses_unknown_batched_steps(meshes: Path):
    with pytest.raises(ConfigError, match=r"device\.transforms.*unknown 'Spin'"):
        build_loader(_config(meshes, ["Spin"]))
