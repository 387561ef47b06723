"""The training scripts in examples/ run a few steps on the demo data, through the public API
only, from MeshFolder, ModelNet and labelled shards; the loss is finite."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest

from hetload import demo
from hetload.shards.preprocess import preprocess

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("examples")
    # small meshes keep SamplePoints quick: the seed gives every class and some scans
    demo.generate(root / "demo", n=14, seed=1)
    preprocess(root / "demo" / "meshes", root / "shards", labels="folder", progress=False)
    return root


def _main(name: str):
    return runpy.run_path(str(EXAMPLES / name))["main"]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo/meshes"],
        ["shards"],
        ["shards", "--stream"],
        ["demo/modelnet", "--modelnet"],
    ],
    ids=["mesh-folder", "shard-dataset", "shard-stream", "modelnet"],
)
def test_classifier_trains_a_few_steps(data, argv, capsys):
    main = _main("classify.py")
    loss = main([str(data / argv[0]), *argv[1:], "--steps", "3", "--points", "64"])
    assert math.isfinite(loss)
    assert "step 3: loss" in capsys.readouterr().out


def test_segmenter_trains_a_few_steps(data, capsys):
    main = _main("segment.py")
    loss = main([str(data / "demo" / "scans"), "--steps", "3", "--points", "128"])
    assert math.isfinite(loss)
    assert "step 3: loss" in capsys.readouterr().out
