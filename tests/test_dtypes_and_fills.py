"""Index fields keep their dtype and their target through ``to``, ``pin_memory``, ``padded``,
slicing and the interop adapters; fills are exact for every dtype or refused naming the field;
transform parameters are checked in the constructor (from Python and from a config)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload import transforms as T

CAN_PIN = torch.cuda.is_available()


def long_form(examples: int) -> int:
    """``examples`` here, or the profile's count when larger (HYPOTHESIS_PROFILE=thorough: the
    campaign's long form, RELIABILITY.md)."""
    return max(examples, settings.default.max_examples)


def mesh_batch(face_dtype=np.int64):
    samples = []
    for n in (3000, 5):
        verts = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
        faces = np.array([[0, 1, 2], [n - 3, n - 2, n - 1]], dtype=face_dtype)
        samples.append(
            {
                "verts": verts,
                "faces": faces,
                "colors": np.full((n, 3), 200, np.uint8),
                "label": 7,
                "weight": 0.5,
            }
        )
    return samples, hl.collate(samples)


def check_relations(batch, samples):
    """Every index field still points into its target, in its own dtype, sample by sample."""
    assert batch.faces.index_base is not None
    assert torch.equal(batch.faces.index_base.cpu(), batch.verts.offsets.cpu())
    for i, sample in enumerate(samples):
        got = batch.sample(i)
        assert got["faces"].dtype == torch.from_numpy(sample["faces"]).dtype
        np.testing.assert_array_equal(got["faces"].cpu().numpy(), sample["faces"])
        np.testing.assert_array_equal(batch.faces.unbind()[i].cpu().numpy(), sample["faces"])


# --- to(): dtype arguments cast floating fields only ---------------------------------------------


def test_to_another_tensor_keeps_faces_integer():
    """``batch.to(float16_tensor)`` cast faces to float16: vertex 2049 became 2048."""
    samples, batch = mesh_batch()
    assert int(batch.faces.values.max()) > 2049  # beyond float16's exact integers
    other = torch.zeros(1, dtype=torch.float16)
    moved = batch.to(other)
    assert moved.verts.dtype == torch.float16
    assert moved.faces.dtype == torch.int64 and moved.colors.dtype == torch.uint8
    assert moved["label"].dtype == torch.int64 and moved["weight"].dtype == torch.float16
    check_relations(moved, samples)
    assert moved.faces.to(other).dtype == torch.int64  # the Ragged alone, too


@pytest.mark.parametrize("face_dtype", [np.int32, np.int64, np.uint16, np.int16])
@pytest.mark.parametrize("args", [(torch.float64,), ("cpu", torch.float16), (), ("cpu",)], ids=str)
def test_to_with_dtype_arguments_keeps_every_index_and_integer_field(face_dtype, args):
    samples, batch = mesh_batch(face_dtype)
    for moved in (batch.to(*args), batch.to(dtype=torch.float64), batch.to("cpu", copy=True)):
        assert moved.faces.dtype == torch.from_numpy(samples[0]["faces"]).dtype
        assert moved.colors.dtype == torch.uint8 and moved["label"].dtype == torch.int64
        check_relations(moved, samples)


@pytest.mark.skipif(not CAN_PIN, reason="pin_memory needs an accelerator")
def test_pin_memory_keeps_the_relation():
    samples, batch = mesh_batch(np.int32)
    pinned = batch.pin_memory()
    assert pinned.faces.index_base is pinned.verts.offsets  # still one shared tensor
    assert pinned.faces.dtype == torch.int32 and pinned.faces.values.is_pinned()
    check_relations(pinned, samples)


def test_interop_keeps_index_dtypes_and_targets():
    samples, batch = mesh_batch(np.int32)
    nested = hl.interop.to_nested(batch)
    assert nested["faces"].dtype == torch.int32
    for item, sample in zip(nested["faces"].unbind(), samples):
        np.testing.assert_array_equal(item.numpy(), sample["faces"])
    unsigned = hl.collate([{"verts": np.zeros((4, 3), np.float32), "faces": np.array(
        [[0, 1, 3]], np.uint32)}] * 2)  # fmt: skip
    item = hl.interop.to_nested(unsigned)["faces"].unbind()[1]
    assert item.dtype == torch.uint32 and item.tolist() == [[0, 1, 3]]


def test_to_pyg_after_a_copy_of_the_offsets():
    pytest.importorskip("torch_geometric")
    samples, batch = mesh_batch()
    copied = hl.HeteroBatch(
        {
            **dict(batch.items()),
            "faces": hl.Ragged(
                batch.faces.values,
                batch.faces.offsets,
                name="faces",
                index_base=batch.verts.offsets.clone(),  # what pin_memory used to make
            ),
        }
    )
    data = hl.interop.to_pyg(copied)
    assert data.face.shape == (3, 4)
    assert torch.equal(data.to_data_list()[1].face.T, torch.from_numpy(samples[1]["faces"]))


# --- fills ------------------------------------------------------------------------------------


def test_int64_fill_does_not_go_through_a_double():
    r = hl.Ragged.from_list([torch.zeros(1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)])
    assert r.padded(2**53 + 1)[1, 0].item() == 2**53 + 1
    assert r.padded(-(2**63))[1, 0].item() == -(2**63)
    assert r.padded(2**63 - 1)[1, 0].item() == 2**63 - 1
    with pytest.raises(ValueError, match="field 'values': fill 9223372036854775808 cannot be"):
        r.padded(2**63)
    faces = hl.collate([{"verts": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]])}])
    assert faces.faces.padded(2**60 + 1, local=True).shape == (1, 1, 3)


@given(
    dtype=st.sampled_from(
        [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool]
    ),
    fill=st.one_of(
        st.integers(-(2**64), 2**64), st.floats(allow_nan=True), st.sampled_from([True, False])
    ),
)
@settings(max_examples=long_form(300), deadline=None)
def test_integer_fills_are_exact_or_refused_naming_the_field(dtype, fill):
    values = torch.zeros(1, 2, dtype=dtype)
    offsets = torch.tensor([0, 1, 1])
    low, high = (0, 1) if dtype == torch.bool else (torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    exact = isinstance(fill, int) or (
        fill == fill and abs(fill) != float("inf") and fill == int(fill)
    )
    if exact and low <= int(fill) <= high:
        out = hl.ops.packed_to_padded(values, offsets, fill=fill, name="f")
        assert out[1].tolist() == [[int(fill)] * 2] or out[1].tolist() == [[bool(fill)] * 2]
    else:
        with pytest.raises(ValueError, match=r"field 'f': fill .* cannot be stored exactly"):
            hl.ops.packed_to_padded(values, offsets, fill=fill, name="f")


def test_float_fill_overflow_names_the_field():
    r = hl.Ragged.from_list([torch.zeros(1, dtype=torch.float16)], name="h")
    with pytest.raises(ValueError, match=r"field 'h': fill 10000000000\.0 overflows float16"):
        r.padded(1e10)
    assert torch.isinf(hl.Ragged.from_list([torch.zeros(0, dtype=torch.float16)] * 2).padded(
        float("inf"))).all()  # fmt: skip
    with pytest.raises(ValueError, match="real number"):
        r.padded("0")


def test_padded_nan_is_cached_once_and_negative_zero_is_not_zero():
    r = hl.Ragged.from_list([torch.ones(2), torch.ones(1)])
    first = r.padded(float("nan"))
    assert r.padded(float("nan")) is first and len(r._padded) == 1
    zero, negative = r.padded(0.0), r.padded(-0.0)
    assert torch.signbit(negative[1, 1]) and not torch.signbit(zero[1, 1])
    for k in range(50):  # a new fill per call does not grow memory
        r.padded(float(k))
    assert len(r._padded) <= 4


# --- unbind / sample / padded agree on local numbering (issue 12) ------------------------------


def test_unbind_padded_and_sample_give_local_faces():
    samples, batch = mesh_batch()
    for i, sample in enumerate(samples):
        local = batch.faces.unbind()[i]
        assert torch.equal(local, batch.sample(i)["faces"])
        assert torch.equal(local, batch.faces.padded()[i, : len(local)])
        np.testing.assert_array_equal(local.numpy(), sample["faces"])
    glob = batch.faces.unbind(local=False)[1]
    assert torch.equal(glob, torch.from_numpy(samples[1]["faces"]) + 3000)


def test_slices_of_a_batch_stay_consistent():
    samples, batch = mesh_batch()
    verts, faces = batch.verts[1:], batch.faces[1:]
    assert isinstance(verts, hl.Ragged) and len(verts) == 1
    assert torch.equal(faces.index_base, verts.offsets)
    np.testing.assert_array_equal(faces.unbind()[0].numpy(), samples[1]["faces"])
    assert faces.values.max() < len(verts.values)
    assert len(batch.verts[5:9]) == 0
    with pytest.raises(ValueError, match="step 1"):
        batch.verts[::2]
    with pytest.raises(TypeError, match=r"'verts'.*int or a slice"):
        batch.verts["a"]
    assert torch.equal(batch.verts[np.int64(1)], batch.verts[1])
    assert batch[np.int64(1)]["label"] == 7


# --- transform parameters are checked where the transform is built ------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: T.Jitter(sigma=float("nan")), r"Jitter\(sigma=...\) must be finite"),
        (lambda: T.Jitter(sigma=float("inf")), r"Jitter\(sigma=...\) must be finite"),
        (lambda: T.Jitter(clip=float("nan")), r"Jitter\(clip=...\) must be finite"),
        (lambda: T.Jitter(sigma=-1), r"must be >= 0"),
        (lambda: T.Jitter(sigma="0.1"), r"must be a number"),
        (lambda: T.RandomScale(float("nan"), 2), r"RandomScale\(low=...\) must be finite"),
        (lambda: T.RandomScale(1, float("inf")), r"RandomScale\(high=...\) must be finite"),
        (lambda: T.RandomScale(0, 1), r"must be > 0"),
        (lambda: T.RandomScale(2, 1), r"low <= high"),
        (lambda: T.Subsample(2.7), r"Subsample\(n=...\) must be an integer"),
        (lambda: T.Subsample(True), r"must be an integer"),
        (lambda: T.Subsample(0), r"Subsample needs n >= 1"),
        (lambda: T.SphereCrop(float("nan")), r"SphereCrop\(n=...\) must be an integer"),
        (lambda: T.SamplePoints(-3), r"SamplePoints needs n >= 1"),
        (lambda: T.RandomRotation(axis=True), r"axis"),
        (lambda: T.Center(center=["mean"]), r"center"),
        (lambda: T.ToDtype({"faces": "float32"}), r"'faces' is an index field"),
        (lambda: T.ToDtype({"verts": "U4"}), r"not a bool, integer or float dtype"),
        (lambda: T.ToDtype(floating="int32"), r"must be a float dtype"),
        (lambda: T.Compose(T.Center()), r"list of transforms"),
        (lambda: T.Subsample(4, schema={"verts": "ragged"}), r"must be a hetload Schema"),
    ],
)
def test_transform_parameters_are_checked_in_the_constructor(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_jitter_nan_is_refused_from_a_config(tmp_path):
    """``Jitter(sigma=nan)`` was accepted from a config and turned every vertex into NaN."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        "dataset:\n  type: MeshFolder\n  root: data\n"
        "transforms:\n  - Jitter: {sigma: .nan}\n"
        "sampler:\n  type: bucket\n  max_tokens: 100\n"
    )
    with pytest.raises(ValueError, match=r"transforms\[0\].*sigma.*finite"):
        hl.build_loader(config)


def test_to_dtype_refuses_lossy_casts_per_sample():
    sample = {"verts": np.array([[1e6, 0, 0]], np.float64), "faces": np.array([[0, 0, 300]])}
    with pytest.raises(ValueError, match=r"'verts' holds 1000000\.0, beyond float16"):
        T.ToDtype({"verts": "float16"})(sample)
    with pytest.raises(ValueError, match="'faces' holds 300, outside int8"):
        T.ToDtype({"faces": "int8"})(sample)
    out = T.ToDtype({"faces": "int16"}, floating="float32")(sample)
    assert out["faces"].dtype == np.int16 and out["verts"].dtype == np.float32
