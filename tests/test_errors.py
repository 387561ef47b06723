"""ErrorPolicy: one on_error mechanism, its report shared across worker processes."""

from __future__ import annotations

import gc
import multiprocessing
import warnings

import pytest

from hetload import ErrorPolicy
from hetload.errors import HetloadWarning, Skipped


def _skip_in_child(policy: ErrorPolicy, source: str) -> None:
    policy.handle(source, ValueError(f"broken {source}"))


def test_raise_reraises_and_records_nothing():
    policy = ErrorPolicy("raise")
    with pytest.raises(ValueError, match="bad"):
        policy.handle("a.obj", ValueError("bad"))
    assert policy.report == [] and policy.last is None


def test_skip_and_warn_record_source_and_reason():
    policy = ErrorPolicy("skip")
    policy.handle("a.obj", ValueError("bad header"))
    assert policy.report == [Skipped("a.obj", "ValueError: bad header")]
    assert policy.last == Skipped("a.obj", "ValueError: bad header")
    warn = ErrorPolicy("warn")
    with pytest.warns(HetloadWarning, match="a.ply"):
        warn.handle("a.ply", OSError("gone"))
    assert warn.report[0].reason == "OSError: gone"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="on_error must be one of"):
        ErrorPolicy("ignore")


def test_shared_report_collects_other_processes_entries_once():
    policy = ErrorPolicy("skip").share()
    policy.handle("main.obj", ValueError("broken main.obj"))
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_skip_in_child, args=(policy, f"w{i}.obj")) for i in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    # the same skip recorded twice (a worker and the main process) is listed once
    policy.handle("w0.obj", ValueError("broken w0.obj"))
    sources = [s.source for s in policy.report]
    assert sorted(sources) == ["main.obj", "w0.obj", "w1.obj", "w2.obj"]
    assert sources[0] == "main.obj"


def test_shared_report_survives_a_torn_line_and_is_removed_with_the_policy():
    policy = ErrorPolicy("skip").share()
    path = policy.report_path
    policy.handle("a.obj", ValueError("x"))
    with path.open("a") as fh:
        fh.write('{"source": "cut sho')  # a writer killed mid-line
    assert [s.source for s in policy.report] == ["a.obj"]
    del policy
    gc.collect()
    assert not path.exists()


def test_policy_copies_mode_and_report_path():
    first = ErrorPolicy("warn").share()
    second = ErrorPolicy(first)
    assert second.mode == "warn" and second.report_path == first.report_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HetloadWarning)
        second.handle("b.obj", ValueError("y"))
    assert [s.source for s in first.report] == ["b.obj"]
