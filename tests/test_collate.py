"""hl.collate against the reference: round trips bit for bit, faces re-based, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import ref_pack, ref_packed_to_padded, ref_rebase
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.pin_memory import pin_memory as torch_pin_memory

import hetload as hl
from hetload import handoff

NP_DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]


@st.composite
def mesh_batches(draw):
    """B meshes with random vertex/face counts (0 allowed), attrs of a random dtype."""
    batch = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    attr_dtype = draw(st.sampled_from(NP_DTYPES))
    attr_width = draw(st.sampled_from([(), (1,), (4,)]))
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(batch):
        n = draw(st.integers(0, 12))
        f = draw(st.integers(0, 10)) if n else 0
        samples.append(
            {
                "verts": rng.standard_normal((n, 3)).astype(np.float32),
                "faces": rng.integers(0, max(n, 1), size=(f, 3)).astype(np.int64),
                "intensity": rng.integers(0, 100, size=(n, *attr_width)).astype(attr_dtype),
                "label": i,
                "path": f"mesh_{i}.obj",
            }
        )
    return samples


@given(mesh_batches())
def test_unbind_returns_the_inputs_bit_for_bit(samples):
    batch = hl.collate(samples)
    assert len(batch) == len(samples)
    for name in ("verts", "intensity"):
        items = batch[name].unbind()
        for got, sample in zip(items, samples):
            assert got.numpy().dtype == sample[name].dtype
            np.testing.assert_array_equal(got.numpy(), sample[name])
    for i, got in enumerate(batch.faces.unbind(local=True)):
        np.testing.assert_array_equal(got.numpy(), samples[i]["faces"])
    for i, sample in enumerate(samples):
        back = batch.sample(i)
        np.testing.assert_array_equal(back["faces"].numpy(), sample["faces"])
        np.testing.assert_array_equal(back["verts"].numpy(), sample["verts"])
        assert back["label"] == i and back["path"] == sample["path"]


@given(mesh_batches())
def test_packed_views_match_the_reference(samples):
    batch = hl.collate(samples)
    values, offsets = ref_pack([s["verts"] for s in samples])
    np.testing.assert_array_equal(batch.verts.values.numpy(), values)
    np.testing.assert_array_equal(batch.verts.offsets.numpy(), offsets)
    assert batch.verts.offsets.dtype == torch.int64
    lengths = np.diff(offsets)
    np.testing.assert_array_equal(batch.verts.lengths.numpy(), lengths)
    np.testing.assert_array_equal(
        batch.verts.batch_idx.numpy(), np.repeat(np.arange(len(samples)), lengths)
    )
    assert batch.verts.max_len == max(lengths)
    padded = ref_packed_to_padded(values, offsets, None, 0.0)
    np.testing.assert_array_equal(batch.verts.padded().numpy(), padded)
    mask = np.arange(max(lengths))[None, :] < lengths[:, None]
    np.testing.assert_array_equal(batch.verts.mask.numpy(), mask)
    counts = [len(s["verts"]) for s in samples]
    np.testing.assert_array_equal(
        batch.faces.values.numpy(), ref_rebase([s["faces"] for s in samples], counts)
    )


@given(mesh_batches())
def test_faces_padded_are_local_with_minus_one(samples):
    batch = hl.collate(samples)
    _, face_offsets = ref_pack([s["faces"] for s in samples])
    faces_local, _ = ref_pack([s["faces"] for s in samples])
    expected = ref_packed_to_padded(faces_local.reshape(-1, 3), face_offsets, None, -1)
    np.testing.assert_array_equal(batch.faces.padded().numpy(), expected)


def test_fixed_and_meta_fields_batch_like_default_collate():
    samples = [
        {"label": 3, "weight": 0.5, "flag": True, "feat": np.ones(4, np.float32), "name": "a"},
        {"label": 4, "weight": 1.5, "flag": False, "feat": np.zeros(4, np.float32), "name": "b"},
    ]
    schema = hl.Schema({"feat": "fixed"})
    batch = hl.collate(samples, schema=hl.DEFAULT_SCHEMA.extend(schema.fields))
    reference = torch.utils.data.default_collate(samples)
    for name in ("label", "weight", "flag", "feat"):
        assert batch[name].dtype == reference[name].dtype, name
        assert torch.equal(batch[name], reference[name]), name
    assert batch.name == ["a", "b"]


def test_unknown_array_fields_are_ragged_and_scalars_fixed():
    samples = [
        {"points": np.zeros((2, 3), np.float32), "rgb": np.zeros((2, 3), np.uint8), "t": 1.0},
        {"points": np.zeros((5, 3), np.float32), "rgb": np.zeros((5, 3), np.uint8), "t": 2.0},
    ]
    batch = hl.collate(samples)
    assert isinstance(batch.rgb, hl.Ragged) and batch.rgb.offsets.tolist() == [0, 2, 7]
    assert batch.t.shape == (2,)


def test_unknown_fields_refused_when_schema_says_so():
    schema = hl.Schema({"verts": "ragged"}, unknown="error")
    with pytest.raises(ValueError, match="'extra' is not in the schema"):
        hl.collate([{"verts": np.zeros((1, 3)), "extra": np.zeros(1)}], schema=schema)


def test_custom_index_field_into_points():
    schema = hl.Schema({"points": "ragged", "edges": "index:points"})
    samples = [
        {"points": np.zeros((3, 3)), "edges": np.array([[0, 2]])},
        {"points": np.zeros((2, 3)), "edges": np.array([[1, 0], [0, 1]])},
    ]
    batch = hl.collate(samples, schema=schema)
    assert batch.edges.values.tolist() == [[0, 2], [4, 3], [3, 4]]
    assert batch.edges.padded().tolist() == [[[0, 2], [-1, -1]], [[1, 0], [0, 1]]]


def _two(**changes):
    first = {"verts": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]])}
    second = {"verts": np.zeros((4, 3), np.float32), "faces": np.array([[0, 1, 3]])}
    second.update(changes)
    return [first, second]


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (_two(verts=np.zeros((4, 3), np.float64)), "'verts': sample 1 has dtype torch.float64"),
        (_two(verts=np.zeros((4, 2), np.float32)), "'verts': sample 1 has shape"),
        (_two(faces=np.array([[0, 1, 4]])), "'faces': sample 1 has index 4, outside"),
        (_two(faces=np.array([[0, -1, 2]])), "'faces': sample 1 has index -1"),
        ([{"verts": np.zeros((3, 3)), "faces": np.array([[0.0, 1.0, 2.0]])}], "integer dtype"),
        ([{"faces": np.array([[0, 1, 2]])}], "indexes into 'verts'"),
        ([{"verts": np.array(["a", "b"])}], "cannot be batched as numbers"),
        ([{"verts": [1, 2, 3]}], "expected a numpy array"),
    ],
)
def test_bad_samples_name_the_field_and_the_sample(samples, message):
    with pytest.raises((ValueError, TypeError), match=message):
        hl.collate(samples)


def test_none_samples_are_dropped():
    samples = _two()
    batch = hl.collate([None, samples[0], None, samples[1]])
    assert len(batch) == 2
    assert len(hl.collate([None, None])) == 0


def test_empty_list_and_non_dict_samples_are_errors():
    with pytest.raises(ValueError, match="empty"):
        hl.collate([])
    with pytest.raises(TypeError, match="sample 0"):
        hl.collate([np.zeros(3)])


def test_read_only_and_strided_numpy_inputs():
    base = np.arange(24, dtype=np.float32).reshape(8, 3)
    frozen = base.copy()
    frozen.flags.writeable = False
    reverse = base[::-1]
    batch = hl.collate([{"verts": frozen}, {"verts": reverse}])
    np.testing.assert_array_equal(batch.verts.unbind()[1].numpy(), reverse)
    np.testing.assert_array_equal(batch.verts.unbind()[0].numpy(), frozen)


def test_pin_memory_keeps_the_batch_type(monkeypatch):
    batch = hl.collate(_two())
    calls = []
    monkeypatch.setattr(
        hl.HeteroBatch, "pin_memory", lambda self, device=None: calls.append(1) or self
    )
    # DataLoader's pin-memory thread calls this utility on every batch
    assert torch_pin_memory(batch) is batch and calls == [1]


class _Meshes(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng(i)
        nv = int(rng.integers(0, 50))
        return {
            "verts": rng.standard_normal((nv, 3)).astype(np.float32),
            "faces": rng.integers(0, max(nv, 1), size=(2 * nv, 3)),
            "label": i,
        }


def test_dataloader_with_workers_delivers_intact_batches_in_shared_memory():
    ds = _Meshes(24)
    loader = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=hl.collate)
    seen = 0
    before = handoff.stats()["received"]
    for batch in loader:
        assert isinstance(batch, hl.HeteroBatch)
        # built in a worker: the batch is one shared-memory buffer (a slot of the worker's
        # ring), so crossing to this process moved a handle, not the bytes
        storage = batch.verts.values.untyped_storage()
        assert batch.faces.values.untyped_storage().data_ptr() == storage.data_ptr()
        assert batch.label.untyped_storage().data_ptr() == storage.data_ptr()
        for j, i in enumerate(batch.label.tolist()):
            expected = ds[i]
            sample = batch.sample(j)
            np.testing.assert_array_equal(sample["verts"].numpy(), expected["verts"])
            np.testing.assert_array_equal(sample["faces"].numpy(), expected["faces"])
            seen += 1
    assert seen == 24
    assert handoff.stats()["received"] - before == len(loader)


def test_main_process_collate_is_not_shared():
    assert not hl.collate(_two()).verts.values.is_shared()


def test_an_index_field_may_index_another_index_field():
    """``marked`` holds face numbers: re-based by the faces' offsets, like faces by verts'."""
    schema = hl.DEFAULT_SCHEMA.extend({"marked": "index:faces"})
    samples = [
        {"verts": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]] * 2), "marked": [1]},
        {"verts": np.zeros((4, 3), np.float32), "faces": np.array([[0, 1, 3]] * 3), "marked": [2]},
    ]
    for s in samples:
        s["marked"] = np.array(s["marked"])
    batch = hl.collate(samples, schema)
    assert batch.marked.values.tolist() == [1, 2 + 2]
    assert batch.marked.index_base is batch.faces.offsets
    assert batch.faces.values[2:].tolist() == [[3, 4, 6]] * 3
