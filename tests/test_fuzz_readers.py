"""Reader fuzzing: every mutated OBJ / PLY / OFF / STL either loads to a valid sample or raises
``ReadError``, within 2 s of CPU time and 10x the file size (+1 MiB) of memory.

The default run is time-boxed (a few seconds); ``HYPOTHESIS_PROFILE=thorough`` runs 20x more
examples, and ``scripts/fuzz_readers.py`` runs for as long as it is given (see RELIABILITY.md).
The mutations and the contract live in ``tests/fuzzing.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fuzzing import (
    MEMORY_CONSTANT,
    MEMORY_FACTOR,
    MUTATIONS,
    check_load,
    corpus_seeds,
    generated_seeds,
    mutate,
    run_case,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload.io as hio

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
EXAMPLES = 25_000 if THOROUGH else 1200
SEEDS = generated_seeds()
mutations = st.lists(
    st.tuples(st.sampled_from(sorted(MUTATIONS)), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=3,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def corpus(shared_meshes):
    seeds = corpus_seeds(shared_meshes)
    if not seeds:
        pytest.skip("no small OBJ/PLY files in the real-file corpus")
    return seeds


def test_every_seed_is_valid_and_every_mutation_changes_some_seed(workdir):
    for name, data in SEEDS.items():
        assert run_case(name, data, [], workdir).result == "ok", name
    for kind in MUTATIONS:
        assert any(mutate(data, [(kind, s)]) != data for data in SEEDS.values() for s in range(4))


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_each_mutation_on_each_seed_shape(kind, workdir):
    """Every kind of damage on every seed (OBJ and PLY, text and both byte orders), 6 times."""
    outcomes = set()
    for name, data in SEEDS.items():
        for seed in range(6):
            outcomes.add(run_case(name, data, [(kind, seed)], workdir).result)
    assert outcomes <= {"ok", "read_error"}


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(sorted(SEEDS)), steps=mutations)
def test_generated_seeds_fuzzed(name, steps, workdir):
    run_case(name, SEEDS[name], steps, workdir)


OFF_STL = sorted(name for name in SEEDS if name.endswith((".off", ".stl")))


@settings(max_examples=EXAMPLES // 4)
@given(name=st.sampled_from(OFF_STL), steps=mutations)
def test_off_stl_scan_fuzzed(name, steps, workdir):
    """``scan`` of a damaged OFF / STL: counts or a ReadError naming the file, nothing else."""
    path = workdir / f"scan{Path(name).suffix}"
    path.write_bytes(mutate(SEEDS[name], steps))
    try:
        info = hio.scan(path)
    except hio.ReadError as exc:
        assert str(exc).startswith(str(path))
        return
    assert info.n_verts >= 0 and info.n_faces >= 0
    assert info.n_triangles is None or info.n_triangles >= 0


@settings(max_examples=EXAMPLES)
@given(data=st.data(), steps=mutations)
def test_real_files_fuzzed(data, steps, corpus, workdir):
    name = data.draw(st.sampled_from(sorted(corpus)), label="seed file")
    run_case(name, corpus[name], steps, workdir)


# ------------------------------------------------------------------- files of a few MB
def _big_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    n = 25_000
    verts = rng.standard_normal((n, 3)).astype(np.float32)
    faces = rng.integers(0, n, size=(2 * n, 3))
    v_lines = "".join(f"v {a:.6g} {b:.6g} {c:.6g}\n" for a, b, c in verts.tolist())
    tri = "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces.tolist())
    # mixed corner formats take the per-line parser
    mixed = "".join(f"f {a + 1}/1 {b + 1}//1 {c + 1}\n" for a, b, c in faces.tolist())
    rows = np.zeros(2 * n, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rows["n"], rows["i"] = 3, faces
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\nproperty float x\n"
        f"property float y\nproperty float z\nelement face {2 * n}\n"
        "property list uchar int vertex_indices\nend_header\n"
    ).encode()
    ascii_header = header.replace(b"binary_little_endian", b"ascii")
    ascii_body = v_lines.replace("v ", "") + "".join(
        f"3 {a} {b} {c}\n" for a, b, c in faces.tolist()
    )
    off = f"OFF\n{n} {2 * n} 0\n" + ascii_body
    tri_rows = np.zeros(2 * n, dtype=[("n", "<f4", (3,)), ("v", "<f4", (9,)), ("a", "<u2")])
    tri_rows["v"] = verts[faces].reshape(-1, 9)
    stl_lines = ["solid big"]
    for t in verts[faces[:5000]].tolist():
        stl_lines += ["facet normal 0 0 1", " outer loop"]
        stl_lines += [f"  vertex {x:.6g} {y:.6g} {z:.6g}" for x, y, z in t]
        stl_lines += [" endloop", "endfacet"]
    return {
        "big.off": off.encode(),
        "big.stl": b"big".ljust(80) + np.uint32(2 * n).tobytes() + tri_rows.tobytes(),
        "big_ascii.stl": ("\n".join([*stl_lines, "endsolid big"]) + "\n").encode(),
        "big.obj": (v_lines + tri).encode(),
        "big_mixed.obj": (v_lines + "vt 0 0\nvn 0 0 1\n" + mixed).encode(),
        "big.ply": header + verts.tobytes() + rows.tobytes(),
        "big_ascii.ply": ascii_header + ascii_body.encode(),
    }


def test_files_of_a_few_mb_stay_in_bounds_and_so_do_their_mutations(workdir):
    """The bounds where the constant no longer hides anything: 0.8-2 MB files, whole and
    damaged (cut in the middle of the faces, a declared count raised, a corner format mixed)."""
    for name, data in _big_files().items():
        assert len(data) > 750_000
        path = workdir / name
        path.write_bytes(data)
        outcome = check_load(path)
        assert outcome.result == "ok", name
        assert outcome.peak_bytes <= MEMORY_FACTOR * len(data) + MEMORY_CONSTANT
        for steps in ([("truncate", 1)], [("declared_count", 2)], [("inject", 3)]):
            run_case(name, data, steps, workdir)


# ------------------------------------------------------------------- bugs fuzzing found
# Each of these raised something other than ReadError (or loaded a wrong sample) before the
# fix named in the comment; they stay as plain regression tests.
PLY_HEADER = "ply\nformat {fmt} 1.0\n{elements}end_header\n"


def _ply(tmp_path, elements: str, body: bytes, fmt: str = "binary_little_endian"):
    path = tmp_path / "bad.ply"
    path.write_bytes(PLY_HEADER.format(fmt=fmt, elements=elements).encode() + body)
    return path


def test_property_declared_twice(tmp_path):  # numpy: "field 'x' occurs more than once"
    elements = "element vertex 1\nproperty float x\nproperty float x\nproperty float z\n"
    with pytest.raises(hio.ReadError, match="'x' is declared twice in element 'vertex'"):
        hio.load(_ply(tmp_path, elements, bytes(12)))


def test_element_count_with_a_non_ascii_digit(tmp_path):  # int('1\xb2') after isdigit()
    path = tmp_path / "bad.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\xb2\nproperty float x\nend_header\n")
    with pytest.raises(hio.ReadError, match="bad element line"):
        hio.load(path)


@pytest.mark.parametrize("count", [-1, 2**31 - 1])
def test_binary_list_count_negative_or_past_the_end(tmp_path, count):  # np.dtype / np.repeat
    elements = (
        "element vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 2\nproperty list int int vertex_indices\n"
    )
    good = np.asarray([3, 0, 1, 2], "<i4").tobytes()
    for rows in (
        np.asarray([count, 0], "<i4").tobytes(),
        good + np.asarray([count], "<i4").tobytes(),
    ):
        path = _ply(tmp_path, elements, bytes(36) + rows)
        with pytest.raises(hio.ReadError, match=r"negative|truncated|runs past"):
            hio.load(path)


def test_obj_index_beyond_int64(tmp_path):  # OverflowError in np.array(cv)
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/1 2//1 99999999999999999999\n")
    with pytest.raises(hio.ReadError, match="line 4"):
        hio.load(path)


def test_obj_coordinate_beyond_float32(tmp_path):  # loaded as inf before the fix
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 3.5e38\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(hio.ReadError, match=r"line 1\b.*not finite"):
        hio.load(path)
    assert hio.load(path, dtype=np.float64)["verts"][0, 2] == 3.5e38


def test_property_less_element_with_a_count_past_ssize_t(tmp_path):  # OverflowError
    elements = (
        "element vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
        f"element junk {10**30}\n"
    )
    assert hio.load(_ply(tmp_path, elements, bytes(12)))["verts"].shape == (1, 3)
    with pytest.raises(hio.ReadError, match="only 0 lines remain"):
        hio.load(_ply(tmp_path, elements, b"1 2 3\n", fmt="ascii"))


@pytest.mark.parametrize("count", ["NaN", "inf", "1e400"])
def test_ascii_list_count_that_is_not_finite(tmp_path, count):  # int(nan) / int(inf)
    elements = (
        "element vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 1\nproperty list uchar int vertex_indices\n"
    )
    body = f"0 0 0\n1 0 0\n0 1 0\n{count} 0 1 2\n".encode()
    with pytest.raises(hio.ReadError, match="line"):
        hio.load(_ply(tmp_path, elements, body, fmt="ascii"))


def test_ascii_negative_list_count(tmp_path):  # np.repeat: "repeats may not contain negative"
    elements = (
        "element vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 2\nproperty list char int vertex_indices\n"
    )
    body = b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n-1 0 1 2 0\n"
    with pytest.raises(hio.ReadError, match=r"line 14\b.*negative"):
        hio.load(_ply(tmp_path, elements, body, fmt="ascii"))
