"""The config covers the Python API: every constructor argument of every class ``build_loader``
builds has a place (a key, ``dataset.options``, set by the build, or Python-only), the keys added
for the layouts, the sampler and the DataLoader reach their classes, and every wrong value of
them is an error naming the key and the reason."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch
from layout_data import KITTI_MAP, write_kitti, write_modelnet, write_scannet, write_shapenet

from hetload.config import SCHEMA, ConfigError, build_loader, load_config, reference
from hetload.config.coverage import (
    BUILT,
    COVERAGE,
    OPTIONS,
    PYTHON,
    option_names,
    signature_names,
)
from hetload.config.schema import DATASET_TYPES


# ---------------------------------------------------------------------------- the table
@pytest.mark.parametrize("name", sorted(COVERAGE))
def test_every_constructor_argument_has_a_place(name: str) -> None:
    """A new argument of any of these classes fails here until COVERAGE places it."""
    accepted, placed = set(signature_names(name)), set(COVERAGE[name])
    assert accepted <= placed, f"{name}: arguments {accepted - placed} are not placed"
    # the table's extra names: DataLoader arguments of newer torch versions only
    newer = {"DataLoader": {"in_order", "pin_memory_device"}}.get(name, set())
    assert placed - accepted <= newer, f"{name} has no arguments {placed - accepted}"


def test_every_place_is_a_real_key() -> None:
    for name, table in COVERAGE.items():
        for arg, where in table.items():
            if where in (OPTIONS, BUILT, PYTHON):
                continue
            section, _, key = where.partition(".")
            assert key in SCHEMA[section], f"{name}({arg}=...) points at a missing key {where}"


def test_every_dataset_type_is_placed_and_every_dataset_key_used() -> None:
    assert set(DATASET_TYPES) <= set(COVERAGE)
    used = {where for name in DATASET_TYPES for where in COVERAGE[name].values()}
    for key in SCHEMA["dataset"]:
        if key in ("type", "options"):
            continue
        assert f"dataset.{key}" in used, f"dataset.{key} reaches no dataset class"
        for kind in SCHEMA["dataset"][key].only:
            assert f"dataset.{key}" in COVERAGE[kind].values(), f"{kind} ignores dataset.{key}"


def test_reference_lists_the_options_of_each_type() -> None:
    text = reference()
    for kind in DATASET_TYPES:
        assert f"| `{kind}` |" in text
    assert "allow_nonfinite" in text and "`spread`" in text and "`in_order`" in text
    assert option_names("ShardStream") == []


# ---------------------------------------------------------------------------- errors
def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _error(tmp_path: Path, body: str, overrides=(), build: bool = False) -> str:
    (tmp_path / "data").mkdir(exist_ok=True)
    with pytest.raises(ConfigError) as info:
        (build_loader if build else load_config)(_write(tmp_path, body), overrides)
    return str(info.value)


FOLDER = "dataset:\n  type: {kind}\n  root: data\n"


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("MeshFolder", "sampler: {spread: -1}", "sampler.spread: expected a number in [0, "),
        ("MeshFolder", "sampler: {spread: true}", "sampler.spread: expected a number"),
        ("MeshFolder", "sampler: {spread: .inf}", "sampler.spread: expected a number"),
        (
            "MeshFolder",
            "sampler: {type: fixed, spread: 0.1}",
            "sampler.spread: applies to sampler.type bucket, not fixed",
        ),
        ("ModelNet", "dataset: {split: val}", "dataset.split: expected one of: train, test"),
        ("ModelNet", "dataset: {synsets: [chair]}", "dataset.synsets: applies to dataset.type"),
        ("ShapeNetCore", "dataset: {synsets: chair}", "dataset.synsets: expected a list of"),
        ("ShapeNetCore", "dataset: {model_file: 3}", "dataset.model_file: expected a non-empty"),
        ("ScanNetScenes", "dataset: {scenes: 5}", "dataset.scenes: expected a list of strings"),
        ("ScanNetScenes", "dataset: {scenes: split.txt}", "dataset.scenes: expected"),
        (
            "ScanNetScenes",
            "dataset: {label_map: {a: 1}}",
            "dataset.label_map: label map: label map entries must be integers",
        ),
        ("ScanNetScenes", "dataset: {label_map: {}}", "dataset.label_map: label map: a label"),
        ("ScanNetScenes", "dataset: {label_map: nowhere.yaml}", "dataset.label_map: no such file"),
        ("ScanNetScenes", "dataset: {label_map: [1, 2]}", "dataset.label_map: expected a mapping"),
        (
            "SemanticKITTI",
            "dataset: {sequences: [-1]}",
            "dataset.sequences: expected one of: train, valid, test or a list of",
        ),
        ("SemanticKITTI", "dataset: {sequences: training}", "dataset.sequences: expected"),
        (
            "SemanticKITTI",
            "dataset: {labels: folder}",
            "dataset.labels: SemanticKITTI takes true, false or null",
        ),
        (
            "MeshFolder",
            "dataset: {labels: true}",
            "dataset.labels: MeshFolder takes labels: folder",
        ),
        ("ModelNet", "dataset: {labels: folder}", "dataset.labels: applies to dataset.type"),
        ("MeshFolder", "dataset: {size_field: faces}", "dataset.size_field: applies to"),
        ("MeshFolder", "loader: {in_order: 1}", "loader.in_order: expected true or false"),
        (
            "MeshFolder",
            "loader: {multiprocessing_context: threads}",
            "loader.multiprocessing_context: expected one of: fork, spawn, forkserver",
        ),
    ],
)
def test_new_keys_refuse_wrong_values_naming_the_key(
    tmp_path: Path, kind: str, extra: str, expected: str
) -> None:
    section, _, body = extra.partition(": ")
    # the dataset section's extra keys go into the one dataset mapping
    if section == "dataset":
        text = FOLDER.format(kind=kind) + "".join(
            f"  {item.strip()}\n" for item in _split_flow(body)
        )
    else:
        text = FOLDER.format(kind=kind) + f"{section}: {body}\n"
    msg = _error(tmp_path, text)
    assert expected in msg
    assert msg.startswith(str(tmp_path / "cfg.yaml"))


def _split_flow(body: str) -> list[str]:
    """``{a: 1, b: [x, y]}`` -> ``["a: 1", "b: [x, y]"]`` (top-level commas only)."""
    inner, depth, part, out = body.strip()[1:-1], 0, "", []
    for ch in inner:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(part)
            part = ""
        else:
            part += ch
    return [*out, part]


def test_build_time_errors_of_new_keys(tmp_path: Path) -> None:
    write_modelnet(tmp_path / "data")
    base = FOLDER.format(kind="ModelNet")
    msg = _error(tmp_path, base + "loader: {in_order: false}\n", build=True)
    assert "loader.in_order: false needs loader.num_workers > 0" in msg
    msg = _error(tmp_path, base + "loader: {multiprocessing_context: spawn}\n", build=True)
    assert "loader.multiprocessing_context: needs loader.num_workers > 0" in msg
    msg = _error(
        tmp_path, "dataset: {type: ModelNet, root: data, options: {split: test}}\n", build=True
    )
    assert "dataset.options.split: set it with dataset.split instead" in msg
    msg = _error(
        tmp_path,
        "dataset: {type: ModelNet, root: data, options: {transform: x}}\n",
        build=True,
    )
    assert "dataset.options.transform: build_loader sets it (from the transforms section)" in msg
    msg = _error(
        tmp_path, "dataset: {type: ModelNet, root: data, options: {pattern: x}}\n", build=True
    )
    assert "dataset.options.pattern: ModelNet has no argument 'pattern'" in msg
    (tmp_path / "shards").mkdir()
    msg = _error(
        tmp_path,
        "dataset: {type: ShardStream, urls: shards, options: {buffer_size: 4}}\n",
        build=True,
    )
    assert "dataset.options.buffer_size: set it with sampler.buffer_size instead" in msg
    msg = _error(
        tmp_path, "dataset: {type: ShardStream, urls: shards, options: {foo: 4}}\n", build=True
    )
    assert "dataset.options.foo: ShardStream has no argument 'foo' Valid: none" in msg
    msg = _error(
        tmp_path, "dataset: {type: ShardStream, urls: shards}\nsampler: {spread: 0.1}\n", build=True
    )
    assert "sampler.spread: applies to map-style datasets; ShardStream cannot honour it" in msg
    msg = _error(
        tmp_path, "dataset: {type: ModelNet, root: data, options: {scan_workerz: 2}}\n", build=True
    )
    assert (
        "dataset.options.scan_workerz: ModelNet has no argument 'scan_workerz'; did you mean "
        "'scan_workers'? Valid: load_options, index, report_path, scan_workers, progress"
    ) in msg


# ---------------------------------------------------------------------------- keys reach classes
def test_spread_and_windows_reach_the_sampler(tmp_path: Path) -> None:
    write_modelnet(tmp_path / "m")
    config = {"dataset": {"type": "ModelNet", "root": str(tmp_path / "m")}}
    loader = build_loader(config)
    assert loader.batch_sampler.spread == SCHEMA["sampler"]["spread"].default
    loader = build_loader(config, ["sampler.spread=0.25"])
    assert loader.batch_sampler.spread == 0.25
    assert build_loader(config, ["sampler.spread=null"]).batch_sampler.spread is None


def test_layout_keys_reach_the_datasets(tmp_path: Path) -> None:
    ref = write_shapenet(tmp_path / "s")
    loader = build_loader(
        {"dataset": {"type": "ShapeNetCore", "root": str(tmp_path / "s"), "synsets": ["03001627"]}}
    )
    assert sorted(loader.dataset.keys) == sorted(k for k in ref if k.startswith("03001627/"))
    ref = write_scannet(tmp_path / "scans")
    (tmp_path / "split.txt").write_text("scene0001_00\nscene0002_00\n")
    loader = build_loader(
        {
            "dataset": {
                "type": "ScanNetScenes",
                "root": str(tmp_path / "scans"),
                "scenes": str(tmp_path / "split.txt"),
                "label_map": {i: 10 + i for i in range(7)},
            },
            "sampler": {"type": "fixed", "batch_size": 1},
        }
    )
    seen = {}
    for batch in loader:
        seen[batch.key[0]] = batch.labels.values.tolist()
    assert seen == {k: (ref[k]["labels"] + 10).tolist() for k in ("scene0001_00", "scene0002_00")}
    ref = write_kitti(tmp_path / "k")
    loader = build_loader(
        {
            "dataset": {
                "type": "SemanticKITTI",
                "root": str(tmp_path / "k"),
                "sequences": "valid",
                "labels": False,
            }
        }
    )
    keys = Counter(k for batch in loader for k in batch.key)
    assert keys == Counter(k for k in ref if k.startswith("08/"))
    assert all("semantic" not in set(batch.keys()) for batch in loader)  # labels: false
    loader = build_loader(
        {"dataset": {"type": "SemanticKITTI", "root": str(tmp_path / "k"), "label_map": KITTI_MAP}},
        ["dataset.sequences=[8]"],
    )
    for batch in loader:
        for key, semantic in zip(batch.key, batch.semantic.unbind()):
            assert semantic.tolist() == [KITTI_MAP[int(v)] for v in ref[key]["semantic"]]


def test_out_of_order_loader_serves_every_sample_and_refuses_state(tmp_path: Path) -> None:
    ref = write_modelnet(tmp_path / "m")
    loader = build_loader(
        {
            "dataset": {"type": "ModelNet", "root": str(tmp_path / "m")},
            "sampler": {"type": "fixed", "batch_size": 2},
            "loader": {"num_workers": 2, "in_order": False, "multiprocessing_context": "fork"},
        }
    )
    assert loader.dataloader.in_order is False
    keys = Counter(k for batch in loader for k in batch.key)
    assert keys == Counter(k for k in ref if "/train/" in k)
    with pytest.raises(TypeError, match=r"loader\.in_order is false"):
        loader.state_dict()


def test_shard_size_field_reaches_the_dataset(tmp_path: Path) -> None:
    from hetload import demo
    from hetload.shards.preprocess import preprocess

    demo.generate(tmp_path / "d", n=8, seed=2)
    preprocess(tmp_path / "d" / "meshes", tmp_path / "sh", max_count=4, progress=False)
    loader = build_loader(
        {"dataset": {"type": "ShardDataset", "path": str(tmp_path / "sh"), "size_field": "faces"}}
    )
    assert torch.equal(
        torch.as_tensor(loader.dataset.sizes), torch.as_tensor(loader.dataset.field_sizes["faces"])
    )


#: keys whose default differs from the constructor's on purpose: (key, class) -> why
DIFFERENT_DEFAULTS = {
    # build_loader sets these from distributed.* / torchrun's environment, not from the class
    ("distributed.world_size", "BucketBatchSampler"): "auto: $WORLD_SIZE",
    ("distributed.rank", "BucketBatchSampler"): "auto: $RANK",
    ("distributed.world_size", "FixedBatchSampler"): "auto: $WORLD_SIZE",
    ("distributed.rank", "FixedBatchSampler"): "auto: $RANK",
    ("distributed.world_size", "ShardStream"): "auto: $WORLD_SIZE",
    ("distributed.rank", "ShardStream"): "auto: $RANK",
    # one key serves several classes: the bucket sampler's budget is also the stream's
    ("sampler.max_tokens", "ShardStream"): "None there means fixed batches (sampler.type)",
    ("sampler.batch_size", "ShardStream"): "None there means bucket batches (sampler.type)",
    ("sampler.batch_size", "FixedBatchSampler"): "required by the class, 32 in a config",
    ("sampler.max_tokens", "BucketBatchSampler"): "required by the class, 262144 in a config",
    ("loader.pin_memory", "DataLoader"): "auto: when the device is CUDA",
    ("loader.prefetch_factor", "DataLoader"): "null: torch's default",
    # loader.threads 0 means "worker processes or none", the class is built only when > 0
    ("loader.threads", "ThreadedLoader"): "0: no ThreadedLoader, 2 in Python",
    ("loader.pin_memory", "ThreadedLoader"): "auto: when the device is CUDA",
    ("loader.prefetch_factor", "ThreadedLoader"): "per thread there, per loader in Python",
}


def test_key_defaults_are_the_constructors() -> None:
    """A key mirroring a constructor argument has that argument's default (or a listed reason)."""
    import inspect

    from hetload.config.coverage import owner
    from hetload.config.schema import REQUIRED

    checked = []
    for name, table in COVERAGE.items():
        params = inspect.signature(owner(name)).parameters
        for arg, where in table.items():
            if where in (OPTIONS, BUILT, PYTHON) or arg not in params:
                continue
            section, _, key = where.partition(".")
            spec = SCHEMA[section][key]
            default = params[arg].default
            if spec.default is REQUIRED or spec.required_for or default is inspect.Parameter.empty:
                if (where, name) not in DIFFERENT_DEFAULTS:
                    assert spec.default is REQUIRED or spec.required_for, (name, arg)
                continue
            if (where, name) in DIFFERENT_DEFAULTS:
                continue
            checked.append(where)
            assert spec.default == default, (
                f"{where} defaults to {spec.default!r}, {name}({arg}=) to {default!r}"
            )
    assert len(checked) > 30 and "sampler.spread" in checked and "loader.in_order" in checked
