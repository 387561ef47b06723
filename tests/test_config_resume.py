"""Every configurable source resumes exactly after ``kill -9``: a training loop over
``build_loader`` (2 workers prefetching) runs in its own process, is killed with SIGKILL (the
whole process group, workers included) between logging a batch and checkpointing it, and a new
process resumes from the last checkpoint. The batches of the committed prefix followed by those
of the resumed run are, in order and bit for bit, those of an uninterrupted run (every sample
once per epoch; ``tests/resume_job.py`` is the loop)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from layout_data import write_modelnet
from resume_job import run

from hetload import demo
from hetload.config import build_loader
from hetload.shards.preprocess import preprocess

JOB = Path(__file__).with_name("resume_job.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    write_modelnet(root / "modelnet", per_class=7)  # 14 train samples
    demo.generate(root / "demo", n=36, seed=5)
    preprocess(root / "demo", root / "shards", max_count=4, progress=False)
    return root


def _config(data: Path, case: str) -> dict:
    loader = {"num_workers": 2, "prefetch_factor": 2}
    if case == "modelnet-fixed":
        return {
            "dataset": {"type": "ModelNet", "root": str(data / "modelnet")},
            "transforms": [{"SamplePoints": {"n": 64}}, {"RandomScale": {"low": 0.5, "high": 2}}],
            "sampler": {"type": "fixed", "batch_size": 3, "seed": 4},
            "loader": loader,
        }
    if case == "shards-bucket":
        return {
            "dataset": {"type": "ShardDataset", "path": str(data / "shards"), "fields": ["verts"]},
            "transforms": ["Center", {"Jitter": {"sigma": 0.01}}],
            "sampler": {"type": "bucket", "max_tokens": 120_000, "seed": 1, "spread": 0.2},
            "loader": loader,
        }
    if case == "stream-fixed":
        return {
            "dataset": {"type": "ShardStream", "urls": str(data / "shards"), "fields": ["verts"]},
            "sampler": {"type": "fixed", "batch_size": 4, "seed": 2},
            "loader": loader,
        }
    raise AssertionError(case)


def _kill_at_block(config_path: Path, workdir: Path, block: str) -> None:
    """Start the loop, wait until it blocks at ``block``, SIGKILL its process group."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(JOB.parent), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, str(JOB), str(config_path), str(workdir), "--block-at", block],
        env=env,
        start_new_session=True,
    )
    try:
        waited = 0.0
        while not (workdir / "blocked").exists():
            assert proc.poll() is None, f"the job ended ({proc.returncode}) before step {block}"
            assert waited < 300, "the job never reached its step"
            time.sleep(0.05)
            waited += 0.05
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _committed(workdir: Path) -> list[dict]:
    """The log lines up to the checkpointed position (those after it are served again)."""
    lines = [json.loads(s) for s in (workdir / "log.jsonl").read_text().splitlines()]
    state = torch.load(workdir / "state.pt", weights_only=True)
    at = (state["epoch"], state["step"])
    return [line for line in lines if (line["epoch"], line["step"]) <= at]


@pytest.mark.parametrize(
    ("case", "block"),
    [("modelnet-fixed", "0:2"), ("shards-bucket", "1:3"), ("stream-fixed", "0:4")],
)
def test_kill_9_then_resume_is_exact(data: Path, tmp_path: Path, case: str, block: str) -> None:
    config = _config(data, case)
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference = run(config, reference_dir)  # uninterrupted (in this process)
    for epoch in (0, 1):
        keys = Counter(k for line in reference if line["epoch"] == epoch for k in line["keys"])
        assert set(keys.values()) == {1}, "every sample once per epoch"
    work = tmp_path / "killed"
    work.mkdir()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    _kill_at_block(config_path, work, block)
    committed = _committed(work)
    epoch, step = map(int, block.split(":"))
    assert (committed[-1]["epoch"], committed[-1]["step"]) == (epoch, step - 1) or (
        step == 1 and committed[-1]["epoch"] == epoch - 1
    )
    (work / "log.jsonl").unlink()
    resumed = subprocess.run(
        [sys.executable, str(JOB), str(config_path), str(work)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(JOB.parent), *sys.path])},
        timeout=300,
        check=True,
    )
    assert resumed.returncode == 0
    rest = [json.loads(s) for s in (work / "log.jsonl").read_text().splitlines()]
    assert rest, "the resumed run served nothing"
    assert committed + rest == reference


@pytest.mark.parametrize("sampler", ["fixed", "bucket"])
def test_loader_resumes_at_another_world_size(data: Path, sampler: str) -> None:
    """Two ranks take 2 steps; one rank's Loader.state_dict resumes a single-rank job, which
    serves the rest: every sample of the epoch once (repeats excluded)."""
    spec = {"type": "fixed", "batch_size": 3} if sampler == "fixed" else {"max_tokens": 120_000}
    config = {
        "dataset": {"type": "ShardDataset", "path": str(data / "shards"), "fields": ["verts"]},
        "sampler": {**spec, "seed": 6},
    }
    served: Counter = Counter()

    def take(batch) -> None:
        flags = batch["is_repeat"].tolist() if "is_repeat" in set(batch.keys()) else None
        served.update(k for i, k in enumerate(batch.key) if not (flags and flags[i]))

    states = []
    for rank in (0, 1):
        loader = build_loader(config, ["distributed.world_size=2", f"distributed.rank={rank}"])
        loader.set_epoch(3)
        for step, batch in enumerate(loader):
            take(batch)  # a batch the loop has is consumed
            if step == 1:
                break
        states.append(loader.state_dict())
    assert states[0] == states[1]  # the same on every rank
    resumed = build_loader(config, ["distributed.world_size=1", "distributed.rank=0"])
    resumed.load_state_dict(states[1])
    resumed.set_epoch(3)
    for batch in resumed:
        take(batch)
    total = len(build_loader(config).dataset)
    assert len(served) == total and set(served.values()) == {1}
