"""``torch.compile`` over Ragged and the ops: fullgraph without breaks, checks as in-graph
asserts, the fake implementations exact, and the recompiles of an epoch of bucketed shapes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch._dynamo
import torch._inductor.config
from hypothesis import given
from hypothesis import strategies as st
from torch._dynamo.testing import CompileCounterWithBackend
from torch._inductor.async_compile import shutdown_compile_workers

import hetload as hl
from hetload.ops.buckets import PER_OCTAVE


def _views(values, offsets, max_len):
    ragged = hl.Ragged(values, offsets, max_len=max_len)
    padded = ragged.padded()
    mask = ragged.mask
    back = hl.ops.padded_to_packed(padded * 2, offsets, total=values.shape[0])
    return padded, mask, back


def _case(lengths, dim=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int64)
    return torch.randn(int(offsets[-1]), dim, generator=gen), offsets, max(lengths, default=0)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    # inductor may keep a pool of compile worker processes; other tests count this process's
    # children, so none may outlive these tests
    shutdown_compile_workers()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_dynamic_compile_has_no_graph_break(backend):
    torch._dynamo.utils.counters.clear()
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(_views, backend=counter, fullgraph=True, dynamic=True)
    # compile in this process: inductor's pool of compile workers would outlive the test (and
    # other tests count this process's children)
    with torch._inductor.config.patch(compile_threads=1):
        for lengths in ([3, 0, 5], [7, 1], [2, 2, 2, 9]):
            values, offsets, max_len = _case(lengths)
            got = compiled(values, offsets, max_len)
            want = _views(values, offsets, max_len)
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=0, atol=0)
    assert not torch._dynamo.utils.counters["graph_break"]
    # dynamic shapes: one graph serves every batch size and length
    assert counter.frame_count == 1


def test_compiled_gradients_match_eager():
    def loss(values, offsets, max_len):
        padded = hl.Ragged(values, offsets, max_len=max_len).padded()
        return (padded**2).sum(dim=1).sum()

    values, offsets, max_len = _case([4, 0, 6])
    leaf = values.clone().requires_grad_()
    torch.compile(loss, backend="aot_eager", fullgraph=True, dynamic=True)(
        leaf, offsets, max_len
    ).backward()
    torch.testing.assert_close(leaf.grad, 2 * values)


@pytest.mark.parametrize(
    ("offsets", "rule"),
    [([1, 3, 10], "offsets[0] must be 0"), ([0, 6, 5, 10], "non-decreasing")],
)
def test_bad_offsets_are_asserts_in_the_graph(offsets, rule):
    values = torch.zeros(10, 3)
    compiled = torch.compile(_views, backend="aot_eager", fullgraph=True, dynamic=True)
    with pytest.raises(RuntimeError, match=re.escape(rule)):
        compiled(values, torch.tensor(offsets), 10)


def test_short_max_len_is_an_assert_in_the_graph_and_a_value_error_eagerly():
    values, offsets, _ = _case([3, 7])
    compiled = torch.compile(_views, backend="aot_eager", fullgraph=True, dynamic=True)
    with pytest.raises(RuntimeError, match="shorter than the longest item"):
        compiled(values, offsets, 5)
    with pytest.raises(ValueError, match="field 'values': max_len=5 is shorter"):
        hl.Ragged(values, offsets, max_len=5)


def test_host_facts_are_asked_for_under_compile():
    def no_total(padded, offsets):
        return hl.ops.padded_to_packed(padded, offsets)

    compiled = torch.compile(no_total, backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="total must be given"):
        compiled(torch.zeros(2, 3, 1), torch.tensor([0, 1, 3]))


def test_fake_implementations_are_exact():
    values, offsets, _ = _case([2, 0, 3])
    base = torch.tensor([0, 4, 4, 9])
    faces = torch.tensor([[0, 1, 2], [1, 2, 3], [4, 5, 6], [5, 6, 7], [8, 4, 5]])
    padded = torch.randn(3, 4, 3)
    for op, args in [
        (torch.ops.hetload.packed_to_padded.default, (values, offsets, 4, 0.0)),
        (torch.ops.hetload.packed_to_padded_local.default, (faces, offsets, base, 3, -1.0)),
        (torch.ops.hetload.padded_to_packed.default, (padded, offsets, 5)),
    ]:
        torch.library.opcheck(op, args)


# ---------------------------------------------------------------------------- bucketing


@given(st.integers(0, 1 << 20), st.sampled_from([1, 8, 64]))
def test_bucket_length_covers_and_wastes_little(n, multiple_of):
    b = hl.ops.bucket_length(n, multiple_of)
    assert b >= n and b % multiple_of == 0
    assert b - n < max(multiple_of, n / PER_OCTAVE + 1)
    assert hl.ops.bucket_length(b, multiple_of) == b  # a bucket is its own bucket


def test_bucket_lengths_are_logarithmically_few():
    top = 1 << 16
    buckets = {hl.ops.bucket_length(n, 8) for n in range(top + 1)}
    assert len(buckets) <= PER_OCTAVE * math.log2(top / 8) + PER_OCTAVE


def test_padded_multiple_of_and_its_mask():
    values, offsets, _ = _case([3, 0, 13])
    ragged = hl.Ragged(values, offsets)
    padded = ragged.padded(multiple_of=8)
    mask = ragged.padding_mask(multiple_of=8)
    assert padded.shape == (3, 16, 3) and mask.shape == (3, 16)
    assert torch.equal(padded[:, :13], ragged.padded())
    assert not padded[:, 13:].any()
    assert torch.equal(mask[:, :13], ragged.mask) and not mask[:, 13:].any()
    assert torch.equal(padded[mask], values)


def _epoch_lengths(steps: int, seed: int) -> list[list[int]]:
    """An epoch of batches whose longest items spread over 1..4000 rows (log-uniform)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        top = int(np.exp(rng.uniform(0, np.log(4000))))
        batches.append([int(x) for x in rng.integers(0, top + 1, size=3)] + [top])
    return batches


def _step(padded, mask):
    # a stand-in for a model on the padded batch: masked mean over the items' rows
    weights = mask.unsqueeze(-1).to(padded.dtype)
    return (padded * weights).sum(1) / weights.sum(1).clamp(min=1)


def test_an_epoch_of_bucketed_shapes_recompiles_logarithmically_often():
    """A model compiled for static shapes recompiles once per distinct padded length: with
    ``multiple_of`` that is the number of buckets, O(log max_len); without it, one per length."""
    epoch = _epoch_lengths(120, seed=3)
    counts = {}
    for multiple_of in (8, None):
        torch._dynamo.reset()
        counter = CompileCounterWithBackend("eager")
        step = torch.compile(_step, backend=counter, fullgraph=True, dynamic=False)
        seen = set()
        with torch._dynamo.config.patch(recompile_limit=1000, automatic_dynamic_shapes=False):
            for lengths in epoch:
                values, offsets, _ = _case(lengths, dim=1)
                ragged = hl.Ragged(values, offsets)
                out = step(ragged.padded(multiple_of=multiple_of), ragged.padding_mask(multiple_of))
                torch.testing.assert_close(out, _step(ragged.padded(), ragged.mask))
                seen.add(ragged.padded_len(multiple_of))
        counts[multiple_of] = counter.frame_count
        assert counter.frame_count == len(seen)
    assert counts[8] <= PER_OCTAVE * math.log2(4000 / 8) + PER_OCTAVE
    assert counts[8] < counts[None]


def test_an_epoch_under_dynamic_shapes_compiles_once():
    epoch = _epoch_lengths(40, seed=5)
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(_views, backend=counter, fullgraph=True, dynamic=True)
    for lengths in epoch:
        values, offsets, max_len = _case(lengths, dim=1)
        compiled(values, offsets, hl.ops.bucket_length(max_len, 8))
    assert counter.frame_count == 1
