"""Config validation: every bad-config class gives one clear message naming the file and the key;
overrides are typed as YAML; relative paths resolve against the config file; code is imported only
when allowed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch

from hetload import demo
from hetload.config import SCHEMA, ConfigError, build_loader, load_config, parse_override, reference
from hetload.shards.preprocess import preprocess


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    """Shards of a small demo set (verts of every sample, faces of the meshes)."""
    root = tmp_path_factory.mktemp("shards")
    demo.generate(root / "demo", n=16, seed=1)
    preprocess(root / "demo", root / "shards", max_count=4, progress=False)
    return root / "shards"


def _config(tmp_path: Path, body: str, name: str = "cfg.yaml") -> Path:
    return _write(tmp_path / name, body)


MINIMAL = """
dataset:
  type: MeshFolder
  root: data
"""


# ---------------------------------------------------------------------------- good configs
def test_defaults_filled_and_relative_paths_resolve_against_the_file(
    tmp_path: Path, folder: Path, monkeypatch
) -> None:
    sub = tmp_path / "configs"
    sub.mkdir()
    cfg_path = _config(sub, "dataset: {type: MeshFolder, root: ../data}\n")
    monkeypatch.chdir("/")  # the current directory must not matter for the file's paths
    cfg = load_config(cfg_path)
    assert cfg.dataset["root"] == folder
    for section, keys in SCHEMA.items():
        assert set(getattr(cfg, section)) == set(keys)
    assert cfg.sampler["type"] == "bucket" and cfg.sampler["max_tokens"] == 262_144
    assert cfg.loader["num_workers"] == 0 and cfg.transforms == []
    assert cfg.given == frozenset({"dataset.type", "dataset.root"})


def test_overrides_typed_as_yaml_and_their_paths_relative_to_cwd(
    tmp_path: Path, folder: Path, monkeypatch
) -> None:
    cfg_path = _config(tmp_path, MINIMAL)
    other = tmp_path / "elsewhere" / "meshes"
    other.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(
        cfg_path,
        [
            "sampler.max_tokens=200000",
            "sampler.shuffle=false",
            "sampler.max_batch_size=null",
            "loader.timeout=2.5",
            "dataset.fields=[verts, faces]",
            "dataset.root=meshes",
            "device.pad=[verts]",
        ],
    )
    assert cfg.sampler["max_tokens"] == 200_000 and cfg.sampler["shuffle"] is False
    assert cfg.sampler["max_batch_size"] is None and cfg.loader["timeout"] == 2.5
    assert cfg.dataset["fields"] == ["verts", "faces"]
    assert cfg.dataset["root"] == other
    assert cfg.device["pad"] == ["verts"]


def test_parse_override() -> None:
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")
    assert parse_override("a.b=") == (["a", "b"], None)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("sampler.max_tokens")


def test_transform_overrides_and_dict_configs(folder: Path) -> None:
    raw = {
        "dataset": {"type": "MeshFolder", "root": str(folder)},
        "transforms": ["Center", {"SamplePoints": {"n": 1024}}],
    }
    cfg = load_config(raw, ["transforms.0.center=bbox", "transforms.1.n=2048"])
    assert cfg.transforms == [("Center", {"center": "bbox"}), ("SamplePoints", {"n": 2048})]
    assert raw["transforms"][1] == {"SamplePoints": {"n": 1024}}  # the caller's dict is untouched
    with pytest.raises(ConfigError, match=r"transforms\.<i>\.<argument> with i < 2"):
        load_config(raw, ["transforms.5.n=1"])
    assert load_config(raw, ["transforms=[]"]).transforms == []


def test_a_validated_config_round_trips(folder: Path) -> None:
    cfg = load_config({"dataset": {"type": "MeshFolder", "root": str(folder)}})
    again = load_config(cfg, ["sampler.seed=3"])
    assert again.sampler["seed"] == 3 and again.dataset == cfg.dataset
    assert load_config(cfg) is cfg


# ---------------------------------------------------------------------------- bad configs
def _error(tmp_path: Path, body: str, overrides: tuple[str, ...] = (), **kw) -> str:
    path = _config(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message  # every message names the file
    return message


def test_unknown_keys_list_valid_keys_and_suggest(tmp_path: Path, folder: Path) -> None:
    msg = _error(tmp_path, MINIMAL + "sampler:\n  max_token: 5\n")
    assert "unknown key 'sampler.max_token'; did you mean 'max_tokens'?" in msg
    assert "Valid keys in sampler: type, max_tokens, cost" in msg
    msg = _error(tmp_path, MINIMAL + "loaders:\n  num_workers: 2\n")
    assert "unknown key 'loaders'; did you mean 'loader'?" in msg
    assert "dataset, sampler, collate, loader, distributed, device, transforms" in msg
    msg = _error(tmp_path, MINIMAL + "device:\n  zzz: 1\n")
    assert "unknown key 'device.zzz' Valid keys in device: type, non_blocking, pad" in msg
    msg = _error(tmp_path, MINIMAL, ("sampler.maxtokens=5",))
    assert "(override 'sampler.maxtokens=5'): unknown key 'sampler.maxtokens'" in msg
    assert "did you mean 'max_tokens'?" in msg


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("sampler:\n  max_tokens: -5\n", "sampler.max_tokens: expected an integer >= 1, got -5"),
        (
            "sampler:\n  max_tokens: lots\n",
            "sampler.max_tokens: expected an integer >= 1, got 'lots' (str)",
        ),
        (
            "sampler:\n  max_tokens: true\n",
            "sampler.max_tokens: expected an integer >= 1, got True (bool)",
        ),
        ("sampler:\n  max_tokens: 1.5\n", "sampler.max_tokens: expected an integer >= 1, got 1.5"),
        ("sampler:\n  shuffle: 'yes please'\n", "sampler.shuffle: expected true or false"),
        (
            "sampler:\n  type: buckets\n",
            "sampler.type: expected one of: bucket, fixed, got 'buckets' (str); "
            "did you mean 'bucket'?",
        ),
        (
            "sampler:\n  max_tokens: {verts: 0}\n",
            "sampler.max_tokens: 'verts': expected an integer >= 1, got 0",
        ),
        (
            "loader:\n  num_workers: -1\n",
            "loader.num_workers: expected an integer in [0, 1024], got -1",
        ),
        ("loader:\n  timeout: .nan\n", "loader.timeout: expected a number in [0, 31536000]"),
        (
            "dataset:\n  type: MeshFolder\n  root: data\n  on_error: ignore\n",
            "dataset.on_error: expected one of: raise, skip, warn",
        ),
        (
            "sampler:\n  batch_size: 8\n",
            "sampler.batch_size: applies to sampler.type fixed, not bucket; remove it",
        ),
        (
            "sampler:\n  type: fixed\n  max_tokens: 8\n",
            "sampler.max_tokens: applies to sampler.type bucket, not fixed",
        ),
        (
            "collate:\n  schema: {normals: raggd}\n",
            "collate.schema.normals: field kind must be one of",
        ),
        ("device:\n  type: gpu0\n", "device.type: 'gpu0' is not a torch device"),
        ("device:\n  pad: verts\n", "device.pad: expected a list of strings, got 'verts' (str)"),
        ("transforms: Center\n", "transforms: expected a list of 'Name' or {Name: {arg: value}}"),
        (
            "transforms: [NormalizeUnit]\n",
            "transforms[0]: unknown transform 'NormalizeUnit'; did you mean 'NormalizeUnitSphere'? "
            "Known: Center, Jitter,",
        ),
        (
            "transforms:\n  - SamplePoints: {n: 3, with_normal: true}\n",
            "transforms[0]: SamplePoints has no argument 'with_normal'; "
            "did you mean 'with_normals'? Valid: n, with_normals",
        ),
        (
            "transforms:\n  - SamplePoints: {n: 0}\n",
            "transforms[0]: SamplePoints: SamplePoints needs n >= 1, got 0",
        ),
        ("transforms:\n  - SamplePoints\n", "transforms[0]: SamplePoints: "),
        (
            "transforms:\n  - {Center: 3}\n",
            "transforms[0]: the arguments of 'Center' must be a mapping",
        ),
        (
            "distributed:\n  world_size: 0\n",
            "distributed.world_size: expected an integer in [1, 1048576] or one of: auto",
        ),
    ],
)
def test_wrong_types_and_ranges_name_the_key(
    tmp_path: Path, folder: Path, extra: str, expected: str
) -> None:
    body = extra if extra.startswith("dataset") else MINIMAL + extra
    assert expected in _error(tmp_path, body)


def test_missing_things(tmp_path: Path, folder: Path) -> None:
    msg = _error(tmp_path, "dataset:\n  type: MeshFolder\n  root: nowhere\n")
    assert f"dataset.root: no such folder: {tmp_path / 'nowhere'}" in msg
    msg = _error(tmp_path, "dataset:\n  type: ShardDataset\n")
    assert "dataset.path: required when dataset.type is ShardDataset" in msg
    msg = _error(tmp_path, "dataset:\n  root: data\n")
    assert "dataset.type: required (one of: MeshFolder, ModelNet, ShapeNetCore, " in msg
    msg = _error(tmp_path, "sampler:\n  seed: 1\n")
    assert "dataset: required" in msg
    msg = _error(tmp_path, "dataset:\n  type: ShardDataset\n  path: data/index.json\n")
    assert "dataset.path: no such file or folder" in msg
    msg = _error(tmp_path, MINIMAL.replace("MeshFolder", "MeshFoldr"))
    assert "did you mean 'MeshFolder'?" in msg
    msg = _error(tmp_path, "dataset:\n  type: MeshFolder\n  root: data\n  urls: x.tar\n")
    assert "dataset.urls: applies to dataset.type ShardStream, not MeshFolder" in msg
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_problems(tmp_path: Path) -> None:
    msg = _error(tmp_path, "dataset:\n  type: [MeshFolder\n")
    assert "not valid YAML (line" in msg
    msg = _error(tmp_path, "dataset: {type: MeshFolder}\ndataset: {type: ShardDataset}\n")
    assert "key 'dataset' is given twice" in msg
    assert "expected a mapping of sections" in _error(tmp_path, "- a\n- b\n")
    assert "the config is empty" in _error(tmp_path, "# nothing\n")
    assert "dataset: expected a mapping of keys" in _error(tmp_path, "dataset: MeshFolder\n")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = f"dataset: !!python/object/apply:os.system ['touch {marker}']\n"
    msg = _error(tmp_path, body)
    assert "not valid YAML" in msg and "python/object" in msg
    assert not marker.exists()


# ---------------------------------------------------------------------------- custom code
def _plugin(tmp_path: Path, monkeypatch) -> str:
    module = tmp_path / "my_plugin_for_tests.py"
    module.write_text(
        textwrap.dedent(
            """
            import numpy as np

            def add_one_point(sample, value=0.0):
                extra = np.full((1, 3), value, dtype=sample["verts"].dtype)
                return {**sample, "verts": np.concatenate([sample["verts"], extra])}

            # states what it does to the sizes (the sampler budgets them; a lie is refused)
            add_one_point.out_size = lambda n, field: n + 1 if field == "verts" else n

            def add_one_point_unstated(sample, value=0.0):
                return add_one_point(sample, value)

            def count_cost(count, longest, total):
                return count
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_plugin_for_tests"


def test_custom_code_needs_explicit_permission(tmp_path: Path, folder: Path, monkeypatch) -> None:
    module = _plugin(tmp_path, monkeypatch)
    body = MINIMAL + f"transforms:\n  - {module}:add_one_point: {{value: 7.0}}\n"
    msg = _error(tmp_path, body)
    assert f"transforms[0]: '{module}:add_one_point' would import and run code" in msg
    assert "allow_custom_code=True" in msg and "--allow-custom-code" in msg
    msg = _error(tmp_path, MINIMAL + f"sampler:\n  cost: {module}:count_cost\n")
    assert "sampler.cost:" in msg and "allow_custom_code=True" in msg
    msg = _error(tmp_path, MINIMAL + "sampler:\n  cost: 'os.system'\n")
    assert "sampler.cost: expected one of: padded, sum or 'module:function'" in msg
    path = _config(tmp_path, MINIMAL + f"sampler:\n  cost: {module}:count_cost\n")
    assert load_config(path, allow_custom_code=True).sampler["cost"] == f"{module}:count_cost"


def test_allowed_custom_transform_runs(tmp_path: Path, monkeypatch, shard_dir: Path) -> None:
    module = _plugin(tmp_path, monkeypatch)
    config = {
        "dataset": {"type": "ShardDataset", "path": str(shard_dir), "fields": ["verts"]},
        "transforms": [{f"{module}:add_one_point": {"value": 7.0}}],
        "sampler": {"type": "fixed", "batch_size": 4, "shuffle": False},
    }
    with pytest.raises(ConfigError, match="would import and run code"):
        build_loader(config)
    plain = next(iter(build_loader({**config, "transforms": []})))
    batch = next(iter(build_loader(config, allow_custom_code=True)))
    assert (batch.verts.lengths == plain.verts.lengths + 1).all()
    for i in range(len(batch)):
        assert torch.equal(batch.verts[i][-1], torch.full((3,), 7.0))
    unstated = {**config, "transforms": [{f"{module}:add_one_point_unstated": {"value": 7.0}}]}
    with pytest.raises(ValueError, match=r"returned \d+ rows of 'verts' but states at most"):
        next(iter(build_loader(unstated, allow_custom_code=True)))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
        build_loader({**config, "transforms": ["no_such_module_xyz:f"]}, allow_custom_code=True)


# ---------------------------------------------------------------------------- build errors
def test_build_time_errors_name_the_key(shard_dir: Path) -> None:
    base = {"dataset": {"type": "ShardDataset", "path": str(shard_dir), "fields": ["verts"]}}
    with pytest.raises(
        ConfigError, match=r"distributed\.rank: rank 3 is outside a world of size 2"
    ):
        build_loader({**base, "distributed": {"world_size": 2, "rank": 3}})
    with pytest.raises(ConfigError, match=r"has no argument 'max_opne'; did you mean 'max_open'\?"):
        build_loader({"dataset": {**base["dataset"], "options": {"max_opne": 3}}})
    with pytest.raises(
        ConfigError,
        match=r"loader\.prefetch_factor: needs loader\.num_workers or loader\.threads > 0",
    ):
        build_loader({**base, "loader": {"prefetch_factor": 2}})
    with pytest.raises(
        ConfigError, match=r"sampler\.buffer_size: applies to dataset\.type ShardStream"
    ):
        build_loader({**base, "sampler": {"buffer_size": 8}})
    stream = {"dataset": {"type": "ShardStream", "urls": str(shard_dir)}}
    with pytest.raises(ConfigError, match=r"sampler\.windows: applies to map-style datasets"):
        build_loader({**stream, "sampler": {"windows": 4}})
    if not torch.cuda.is_available():
        with pytest.raises(
            ConfigError, match=r"device\.type: 'cuda' was asked for, but CUDA is not"
        ):
            build_loader({**base, "device": {"type": "cuda"}})
    loader = build_loader({**base, "device": {"pad": ["nope"]}})
    with pytest.raises(ConfigError, match=r"device\.pad: the batch has no ragged field 'nope'"):
        next(iter(loader))


def test_reference_documents_every_key() -> None:
    text = reference()
    for section, keys in SCHEMA.items():
        assert f"**`{section}`**" in text
        for name in keys:
            assert re.search(rf"\| `{name}` \|", text), (section, name)


# ---------------------------------------------------------------------------- loader.threads
def test_loader_threads_serves_the_batches_of_one_process_and_resumes(shard_dir: Path) -> None:
    """loader.threads reads ahead in threads (ThreadedLoader): the batches, their order, the
    resume state and the timed stages are those of loader.num_workers: 0."""
    from test_batch_read import assert_same_batch

    from hetload.data import ThreadedLoader

    base = {
        "dataset": {"type": "ShardDataset", "path": str(shard_dir)},
        "sampler": {"type": "bucket", "max_tokens": 60000, "seed": 5},
    }
    plain = build_loader(base)
    threaded = build_loader({**base, "loader": {"threads": 2, "prefetch_factor": 3}})
    assert isinstance(threaded.dataloader, ThreadedLoader)
    assert threaded.dataloader.threads == 2 and threaded.dataloader.prefetch == 6
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        threaded.set_epoch(epoch)
        want, got = list(plain), list(threaded)
        assert len(got) == len(want) == len(threaded) > 2
        for a, b in zip(got, want, strict=True):
            assert_same_batch(a, b)
    # resume mid-epoch: the rest of the epoch, as the one-process loader serves it
    threaded.set_epoch(2)
    it = iter(threaded)
    next(it), next(it)
    state = threaded.state_dict()
    del it
    again = build_loader({**base, "loader": {"threads": 2}})
    again.load_state_dict(state)
    again.set_epoch(2)
    plain.set_epoch(2)
    rest = list(plain)[2:]
    for a, b in zip(list(again), rest, strict=True):
        assert_same_batch(a, b)
    # timed: per-thread read clocks, each batch's read and collate seconds counted once
    timed = build_loader({**base, "loader": {"threads": 2}}, timed=True)
    batches = list(timed)
    assert timed.times.batches == len(batches) and timed.times.read > 0


def test_loader_threads_refusals_name_the_key(shard_dir: Path) -> None:
    shards = {"dataset": {"type": "ShardDataset", "path": str(shard_dir)}}
    with pytest.raises(ConfigError, match=r"loader\.threads: and loader\.num_workers are two"):
        build_loader({**shards, "loader": {"threads": 2, "num_workers": 2}})
    stream = {"dataset": {"type": "ShardStream", "urls": str(shard_dir)}}
    with pytest.raises(ConfigError, match=r"loader\.threads: reads map-style datasets"):
        build_loader({**stream, "loader": {"threads": 2}})
    with pytest.raises(ConfigError, match=r"loader\.threads"):
        build_loader({**shards, "loader": {"threads": -1}})
