"""Security: hetload never runs code or writes files because of what its inputs say.

- YAML (configs, overrides, ``preprocess --transform``) goes through a safe loader only: a
  ``!!python/...`` tag is refused with an error naming it, and its payload never runs;
- ``.npy`` members are read without pickle: an object array (a pickle payload) in a shard is
  refused by every reader, and a header written as Python code is never evaluated;
- tar members named ``../x``, absolute paths, links: every hetload path that reads tars reads
  them in memory; nothing is written anywhere;
- ``module:function`` in a config is refused without the explicit opt-in, at every entry point,
  before the module is imported;
- and the source itself holds none of the calls that would undo the above.

(``tests/test_config.py`` has the basic config cases: a ``python/object/apply`` config file and
custom transforms / costs without permission.)
"""

from __future__ import annotations

import ast
import io
import json
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from hetload.cli import main
from hetload.config import ConfigError, build_loader, load_config
from hetload.config.load import _UniqueKeyLoader
from hetload.data import ShardDataset, ShardStream
from hetload.shards import ShardError, ShardIndex, write_shards
from hetload.shards.format import EncodedSample, encode_sample
from hetload.shards.preprocess import load_transform_specs, preprocess
from hetload.shards.writer import ShardWriter

PACKAGE = Path(__file__).resolve().parents[1] / "hetload"


@pytest.fixture
def marker(tmp_path) -> Path:
    """A file that exists only if a payload ran."""
    return tmp_path / "payload-ran"


def payloads(marker: Path) -> list[str]:
    """YAML documents that run code (create ``marker``) under an unsafe loader."""
    return [
        f"!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:pathlib.Path.touch "
        f"[!!python/object/apply:pathlib.Path ['{marker}']]",
        f"!!python/object/new:pathlib.Path ['{marker}']",
        "!!python/name:os.system",
        "!!python/module:os",
        f"!!python/object:argparse.Namespace {{path: '{marker}'}}",
    ]


def test_payloads_do_run_under_an_unsafe_loader(marker):
    """The payloads are real: ``yaml.unsafe_load`` runs the first one."""
    yaml.unsafe_load(payloads(marker)[0])
    assert marker.exists()


@pytest.fixture
def shard_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    samples = [{"verts": rng.standard_normal((5, 3)).astype(np.float32)} for _ in range(4)]
    write_shards(samples, tmp_path / "shards")
    return tmp_path / "shards"


# ------------------------------------------------------------------ YAML
def test_every_yaml_entry_point_refuses_python_tags(tmp_path, marker, shard_dir, capsys):
    for payload in payloads(marker):
        config = tmp_path / "config.yaml"
        config.write_text(f"dataset: {payload}\n")
        with pytest.raises(ConfigError, match=r"not valid YAML.*python/"):
            load_config(config)
        with pytest.raises(ConfigError, match=r"not valid YAML.*python/"):
            build_loader(config)
        assert main(["bench", str(config), "--quiet"]) == 2
        assert "python/" in capsys.readouterr().err
        good = tmp_path / "good.yaml"
        good.write_text(f"dataset: {{type: ShardDataset, path: {shard_dir}}}\n")
        with pytest.raises(ConfigError, match="override"):
            load_config(good, [f"sampler.seed={payload}"])
        transform = tmp_path / "transforms.yaml"
        transform.write_text(f"- {payload}\n")
        with pytest.raises(ValueError, match="not valid YAML"):
            load_transform_specs(transform)
    assert not marker.exists()


def test_the_config_loader_is_a_safe_loader():
    assert issubclass(_UniqueKeyLoader, yaml.SafeLoader)
    assert not issubclass(_UniqueKeyLoader, (yaml.FullLoader, yaml.UnsafeLoader))


# ------------------------------------------------------------------ .npy without pickle
class _Payload:
    """Unpickling this runs ``Path(marker).touch()``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _code_header_npy(marker: Path) -> bytes:
    """A v1 ``.npy`` whose header is Python code rather than a literal."""
    header = f"{{'descr': __import__('pathlib').Path('{marker}').touch(), 'shape': (0,)}}"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


def _shards_with_member(directory: Path, data: bytes) -> Path:
    """A shard + index whose sample 1 holds ``data`` as its ``verts.npy``, indexed as usual."""
    directory.mkdir(parents=True)
    writer = ShardWriter(directory / "shard-000000.tar")
    rng = np.random.default_rng(1)
    for i in range(3):
        sample = encode_sample(
            f"{i:09d}",
            {"verts": rng.standard_normal((4, 3)).astype(np.float32)},
            source=f"s{i}",
            counts={"verts": 4},
        )
        if i == 1:
            members = tuple((s, data if s == "verts.npy" else b) for s, b in sample.members)
            sample = EncodedSample(sample.key, members, sample.rows)
        writer.add(sample)
    entry = writer.close()
    ShardIndex([entry], root=str(directory), name="x", info={}).write(directory / "index.json")
    return directory


@pytest.mark.parametrize("kind", ["object array", "structured with an object field", "code"])
def test_pickled_or_code_npy_in_a_shard_is_refused_by_every_reader(tmp_path, marker, kind):
    data = {
        "object array": lambda: _npy_bytes(np.array([_Payload(marker)], dtype=object)),
        "structured with an object field": lambda: _npy_bytes(
            np.array([(1, _Payload(marker))], dtype=[("a", "i4"), ("b", "O")])
        ),
        "code": lambda: _code_header_npy(marker),
    }[kind]()
    with pytest.raises(ValueError):  # numpy itself refuses it without allow_pickle
        np.load(io.BytesIO(data), allow_pickle=False)
    shards = _shards_with_member(tmp_path / "shards", data)

    ds = ShardDataset(shards)
    assert ds[0]["verts"].shape == (4, 3)
    with pytest.raises(ShardError, match=r"000000001\.verts\.npy.*(pickle|header)"):
        ds[1]
    skipping = ShardDataset(shards, on_error="skip")
    assert [skipping[i] is None for i in range(3)] == [False, True, False]
    assert "000000001.verts.npy" in skipping.report[0].source

    stream = ShardStream(shards, batch_size=1, shuffle=False, collate_fn=None, on_error="skip")
    sizes = [len(batch) for batch in stream]  # the plan's 3 steps: one repeated for the skip
    assert sizes == [1, 1, 1] and "000000001.verts.npy" in stream.report[0].source
    with pytest.raises(ShardError, match=r"pickle|header"):
        list(ShardStream(shards, batch_size=1, shuffle=False, collate_fn=None))
    assert not marker.exists()


def test_writing_an_object_array_is_refused(tmp_path, marker):
    with pytest.raises(ValueError, match="Python objects"):
        write_shards([{"verts": np.array([_Payload(marker)], dtype=object)}], tmp_path / "s")
    assert not marker.exists()


# ------------------------------------------------------------------ tar members
def _snapshot(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def _hostile_tar(directory: Path, absolute: Path) -> Path:
    """A tar whose members escape: ``../``, an absolute path, a symlink and a hard link out,
    and a member written through that symlink; indexed like a hetload shard."""
    directory.mkdir(parents=True)
    path = directory / "shard-000000.tar"
    verts = encode_sample("k", {"verts": np.zeros((2, 3), np.float32)}, source="x", counts={})
    payload = dict(verts.members)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:

        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""):
            info = tarfile.TarInfo(name)
            info.size, info.type, info.linkname = len(data), kind, link
            tar.addfile(info, io.BytesIO(data) if data else None)

        for key in ("../escaped", str(absolute.with_suffix(""))):
            add(f"{key}.json", payload["json"])
            add(f"{key}.verts.npy", payload["verts.npy"])
        add("link.json", b"", tarfile.SYMTYPE, "/etc")
        add("hard.json", b"", tarfile.LNKTYPE, "/etc/passwd")
        add("link/escaped.verts.npy", payload["verts.npy"])
    # an index naming the first escaping sample at its real offsets
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    start = members[0].offset
    entry = {
        "url": path.name,
        "nsamples": 1,
        "filesize": path.stat().st_size,
        "keys": ["../escaped"],
        "start": [start],
        "end": [members[1].offset_data + 512 * -(-members[1].size // 512)],
        "members": {
            "json": {"offset": [members[0].offset_data], "size": [members[0].size]},
            "verts.npy": {"offset": [members[1].offset_data], "size": [members[1].size]},
        },
        "rows": {"verts": [2]},
    }
    index = {"shardlist": [entry], "hetload": {"format": 1}, "name": "hostile"}
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def test_hostile_tar_members_are_never_written(tmp_path, monkeypatch, capsys):
    absolute = tmp_path / "outside" / "absolute.npy"
    absolute.parent.mkdir()
    shards = _hostile_tar(tmp_path / "data" / "shards", absolute)
    work = tmp_path / "data" / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = _snapshot(tmp_path)

    ds = ShardDataset(shards, on_error="skip")
    ds[0]
    stream = ShardStream(shards, batch_size=1, shuffle=False, collate_fn=None, on_error="skip")
    seen = [sample for batch in stream for sample in batch]
    assert seen, "the stream reads the members in memory"
    for command in (["stats", str(shards), "--quiet"], ["check", str(shards)]):
        main(command)
    capsys.readouterr()

    assert _snapshot(tmp_path) == before, "a file appeared"
    assert not Path("/escaped.json").exists() and not Path(str(absolute) + ".json").exists()


def test_no_hetload_code_extracts_tars():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\.extract(all)?\(|shutil\.unpack_archive", text), path


# ------------------------------------------------------------------ custom code
def _plugin(tmp_path: Path, marker: Path) -> str:
    """A module whose import alone creates ``marker``."""
    name = "hetload_security_plugin"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def transform(sample, rng=None):\n    return sample\n"
        "def cost(count, longest, total):\n    return count\n"
    )
    return name


def test_custom_code_is_refused_everywhere_before_import(tmp_path, marker, shard_dir, capsys):
    name = _plugin(tmp_path, marker)
    sys.path.insert(0, str(tmp_path))
    try:
        base = {"dataset": {"type": "ShardDataset", "path": str(shard_dir)}}
        configs = {
            "transform": {**base, "transforms": [f"{name}:transform"]},
            "transform with arguments": {**base, "transforms": [{f"{name}:transform": {}}]},
            "sampler cost": {**base, "sampler": {"cost": f"{name}:cost"}},
        }
        for what, config in configs.items():
            with pytest.raises(ConfigError, match="allow_custom_code"):
                build_loader(config)
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            with pytest.raises(ConfigError, match="allow_custom_code"):
                load_config(path)
            assert main(["bench", str(path), "--quiet", "--batches", "1"]) == 2, what
            assert "--allow-custom-code" in capsys.readouterr().err
        # an override cannot bring code in either
        plain = tmp_path / "plain.yaml"
        plain.write_text(yaml.safe_dump(base))
        with pytest.raises(ConfigError, match="allow_custom_code"):
            load_config(plain, [f"transforms=[{name}:transform]"])
        with pytest.raises(ConfigError, match="allow_custom_code"):
            load_config(plain, [f"sampler.cost={name}:cost"])
        # preprocess --transform knows only the built-in transforms
        specs = tmp_path / "transforms.yaml"
        specs.write_text(f"- {name}:transform\n")
        with pytest.raises(KeyError, match="unknown transform"):
            preprocess(shard_dir, tmp_path / "out", transform=specs, progress=False)
        assert name not in sys.modules and not marker.exists()
        # with the opt-in, the same config runs it
        assert build_loader(configs["transform"], allow_custom_code=True) is not None
        assert marker.exists()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


# ------------------------------------------------------------------ the source
_FORBIDDEN = {
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("yaml", "load_all"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("marshal", "loads"),
}


def test_the_source_holds_no_unsafe_loading_call():
    """AST scan of the package: no unsafe YAML / pickle loaders, no ``allow_pickle=True``, no
    ``eval`` / ``exec``, ``torch.load`` only with ``weights_only=True``, and every
    ``yaml.load`` names a loader defined as a SafeLoader subclass."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        safe_loaders = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and any(isinstance(b, ast.Attribute) and b.attr == "SafeLoader" for b in node.bases)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            func = node.func
            if isinstance(func, ast.Name):
                assert func.id not in ("eval", "exec"), where
                continue
            if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
                continue
            call = (func.value.id, func.attr)
            assert call not in _FORBIDDEN, f"{where}: {call}"
            keywords = {k.arg: k.value for k in node.keywords}
            pickle_flag = keywords.get("allow_pickle")
            assert not (isinstance(pickle_flag, ast.Constant) and pickle_flag.value), where
            if call == ("yaml", "load"):
                loader = keywords.get("Loader")
                assert isinstance(loader, ast.Name) and loader.id in safe_loaders, where
            if call == ("torch", "load"):
                flag = keywords.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, where
            if call == ("np", "load"):
                flag = keywords.get("allow_pickle")
                assert isinstance(flag, ast.Constant) and flag.value is False, where
