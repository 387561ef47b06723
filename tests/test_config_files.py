"""Every config in configs/ loads and iterates, on a small demo set generated in a temporary
folder (the configs' own data paths are overridden to point there)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from layout_data import KITTI_MAP, write_kitti, write_modelnet, write_scannet, write_shapenet

from hetload import demo
from hetload.config import build_loader, load_config
from hetload.shards.preprocess import preprocess

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TESTED = {
    "demo.yaml",
    "pointcloud-classification.yaml",
    "mesh-autoencoder.yaml",
    "streaming-ddp.yaml",
    "modelnet-classification.yaml",
    "shapenet-classification.yaml",
    "scannet-segmentation.yaml",
    "semantic-kitti.yaml",
}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("configs") / "demo"
    demo.generate(root, n=40, seed=7)
    return root


@pytest.fixture(scope="module")
def manifest(demo_dir: Path) -> list[dict[str, str]]:
    with (demo_dir / "manifest.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_every_config_is_tested() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == TESTED


@pytest.mark.parametrize("name", sorted(TESTED))
def test_configs_validate_as_shipped(name: str) -> None:
    """Validation alone (the shipped data paths need not exist yet) leaves only path errors."""
    try:
        load_config(CONFIGS / name)
    except ValueError as exc:
        assert "no such" in str(exc) and ("dataset.root" in str(exc) or "dataset.urls" in str(exc))


def test_demo_config(demo_dir: Path, manifest: list[dict[str, str]]) -> None:
    loader = build_loader(CONFIGS / "demo.yaml", [f"dataset.root={demo_dir}"])
    cfg = loader.config
    assert cfg.loader["num_workers"] == 2  # as shipped: worker processes included
    counts = Counter()
    for batch in loader:
        assert set(batch.keys()) == {"verts", "key"}  # every sample carries its key
        lengths = batch.verts.lengths
        assert len(batch) * int(lengths.max()) <= cfg.sampler["max_tokens"]
        assert batch.verts.padded().shape == (len(batch), int(lengths.max()), 3)
        counts.update(lengths.tolist())
    read = {f.relative_to(demo_dir).as_posix() for f in loader.dataset.files}
    assert read >= {row["file"] for row in manifest if row["format"] != "off"}
    assert counts == Counter(int(row["n_vertices"]) for row in manifest if row["file"] in read)


def test_pointcloud_classification_config(demo_dir: Path, manifest: list[dict[str, str]]) -> None:
    loader = build_loader(
        CONFIGS / "pointcloud-classification.yaml",
        [f"dataset.root={demo_dir / 'meshes'}", "loader.num_workers=0"],
    )
    assert loader.dataset.classes == ["blob", "box", "sphere", "torus"]
    labels = Counter()
    for batch in loader:
        assert set(batch.keys()) == {"verts", "normals", "label", "key"}
        assert (batch.verts.lengths == 1024).all()
        assert len(batch) * 1024 <= 32768
        # unit sphere, then scaled by at most 1.25 and jittered by at most 0.05 per axis
        assert float(batch.verts.values.norm(dim=1).max()) <= 1.25 + 0.05 * 3**0.5 + 1e-5
        labels.update(batch.label.tolist())
    expected = Counter(
        loader.dataset.classes.index(row["shape"])
        for row in manifest
        if row["file"].startswith("meshes/")
    )
    assert labels == expected


def test_mesh_autoencoder_config(demo_dir: Path, manifest: list[dict[str, str]]) -> None:
    loader = build_loader(
        CONFIGS / "mesh-autoencoder.yaml",
        [f"dataset.root={demo_dir / 'meshes'}", "loader.num_workers=0"],
    )
    budget = loader.config.sampler["max_tokens"]
    sizes = loader.dataset.field_sizes
    for indices in loader.batch_sampler:
        # both limits, on the sizes the sampler plans with
        assert len(indices) <= 64
        for field in ("verts", "faces"):
            assert len(indices) * int(sizes[field][indices].max()) <= budget[field]
    seen = 0
    for batch in loader:
        assert set(batch.keys()) == {"verts", "faces", "key"}
        faces = batch.faces.padded()
        assert faces.shape == (len(batch), batch.faces.max_len, 3)
        assert int(faces.min()) >= -1
        for i, count in enumerate(batch.verts.lengths.tolist()):
            real = faces[i][batch.faces.mask[i]]
            assert int(real.max()) < count  # local numbering
        norms = batch.verts.values.norm(dim=1)
        assert float(norms.max()) <= 1 + 1e-5
        seen += len(batch)
    assert seen == sum(row["file"].startswith("meshes/") for row in manifest)


def test_streaming_ddp_config(demo_dir: Path) -> None:
    shards = demo_dir.parent / "shards"
    preprocess(demo_dir, shards, max_count=4, progress=False)
    counts, seen = [], []
    for rank in (0, 1):
        loader = build_loader(
            CONFIGS / "streaming-ddp.yaml",
            [
                f"dataset.urls={shards}",
                "distributed.world_size=2",
                f"distributed.rank={rank}",
                "loader.num_workers=0",
                "loader.prefetch_factor=null",
            ],
        )
        loader.set_epoch(1)
        batches = list(loader)
        assert len(batches) == len(loader)
        for batch in batches:
            assert len(batch) * batch.verts.max_len <= 262144
            assert batch.verts.padded().shape[0] == len(batch)
        counts.append(len(batches))
        seen.append(
            {b.tobytes() for batch in batches for b in (v.numpy() for v in batch.verts.unbind())}
        )
    assert counts[0] == counts[1] > 0
    assert not seen[0] & seen[1]


# ---------------------------------------------------------------------------- layouts
def _keys(loader) -> Counter:
    return Counter(k for batch in loader for k in batch.key)


def test_modelnet_config(tmp_path: Path) -> None:
    ref = write_modelnet(tmp_path / "ModelNet")
    loader = build_loader(
        CONFIGS / "modelnet-classification.yaml",
        [f"dataset.root={tmp_path / 'ModelNet'}", "loader.num_workers=0", "dataset.split=test"],
    )
    assert loader.dataset.classes == ["bowl", "cone", "desk"]
    seen = Counter()
    for batch in loader:
        assert (batch.verts.lengths == 1024).all()
        for key, label in zip(batch.key, batch.label.tolist()):
            assert ref[key]["label"] == label
            seen[key] += 1
    assert seen == Counter(k for k in ref if "/test/" in k)  # every test sample once


def test_shapenet_config(tmp_path: Path) -> None:
    ref = write_shapenet(tmp_path / "ShapeNet")
    loader = build_loader(
        CONFIGS / "shapenet-classification.yaml",
        [
            f"dataset.root={tmp_path / 'ShapeNet'}",
            "dataset.synsets=[02691156]",  # no taxonomy.json here: ids, not names
            "loader.num_workers=0",
        ],
    )
    assert _keys(loader) == Counter(k for k in ref if k.startswith("02691156/"))
    for batch in loader:
        assert batch.label.tolist() == [0] * len(batch)  # the first of the sorted synsets
        for key, verts in zip(batch.key, batch.verts.unbind()):
            assert verts.shape == ref[key]["verts"].shape
            assert float(verts.norm(dim=1).max()) == pytest.approx(1.0, abs=1e-5)  # normalized


def test_scannet_config(tmp_path: Path) -> None:
    ref = write_scannet(tmp_path / "scans")
    loader = build_loader(
        CONFIGS / "scannet-segmentation.yaml",
        [f"dataset.root={tmp_path / 'scans'}", "loader.num_workers=0"],
    )
    seen = Counter()
    for batch in loader:
        assert set(batch.keys()) == {"verts", "labels", "key"}
        assert len(batch) <= 2
        for key, labels in zip(batch.key, batch.labels.unbind()):
            assert labels.tolist() == ref[key]["labels"].tolist()  # the identity map
            seen[key] += 1
    assert seen == Counter(list(ref))


def test_semantic_kitti_config(tmp_path: Path) -> None:
    ref = write_kitti(tmp_path / "dataset")
    (tmp_path / "semantic-kitti.yaml").write_text(yaml.safe_dump({"learning_map": KITTI_MAP}))
    loader = build_loader(
        CONFIGS / "semantic-kitti.yaml",
        [
            f"dataset.root={tmp_path / 'dataset'}",
            f"dataset.label_map={tmp_path / 'semantic-kitti.yaml'}",
            "dataset.sequences=[0, 8]",
            "loader.num_workers=0",
            "loader.prefetch_factor=null",
        ],
    )
    seen = Counter()
    for batch in loader:
        assert set(batch.keys()) == {"verts", "semantic", "key"}
        for key, verts, semantic in zip(batch.key, batch.verts.unbind(), batch.semantic.unbind()):
            mapped = [KITTI_MAP[int(v)] for v in ref[key]["semantic"]]
            assert semantic.tolist() == mapped
            assert np.array_equal(verts.numpy(), ref[key]["verts"])
            seen[key] += 1
    assert seen == Counter(list(ref))
