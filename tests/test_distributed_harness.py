"""A multi-process harness: torch.distributed (gloo, a file:// store), 2-3 ranks x 0-2 DataLoader
workers streaming shards through fsspec (``local://``) and ``pipe:cat`` URLs; the whole job is
killed with SIGKILL after a step the test chooses (signalled through a file, never a sleep),
then resumed from one rank's saved state at another world size and worker count, twice.

Checked: every rank steps equally (an all-reduce per step would hang otherwise: bounded by a
timeout), every sample is served exactly once in the epoch across the killed and the resumed
job (repeats marked), every rank's state at the kill is the same, and each resumed rank serves
exactly the batches the rule predicts (``ShardStream.plan`` in this process).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch.distributed as dist
from test_elastic_resume import make_samples

from hetload.data import ShardStream
from hetload.data.stream_plan import interleave
from hetload.shards.writer import write_shards

JOB = Path(__file__).with_name("dist_job.py")
TIMEOUT = 90  # seconds for one launch; a hang (unequal steps) fails here, not forever
N = 200

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("harness")
    write_shards(make_samples(N, seed=3), root, max_count=6)  # 34 shards
    return root


def launch(root, out, *, world, workers, scheme, kill_step=-1, resume=None) -> None:
    """Run ``world`` rank processes to the end of the epoch, or until every rank has taken
    ``kill_step`` (then SIGKILL all of them)."""
    out.mkdir(parents=True, exist_ok=True)
    store = out / "store"
    store.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for rank in range(world):
        cmd = [
            sys.executable,
            str(JOB),
            f"--root={root}",
            f"--scheme={scheme}",
            f"--init=file://{store}",
            f"--world={world}",
            f"--rank={rank}",
            f"--workers={workers}",
            f"--kill-step={kill_step}",
            f"--out={out}",
        ]
        if resume is not None:
            cmd.append(f"--resume={resume}")
        procs.append(subprocess.Popen(cmd, env=env))
    deadline = time.monotonic() + TIMEOUT
    try:
        if kill_step >= 0:
            while not (out / "reached").exists():
                crashed = [p.returncode for p in procs if p.poll() is not None]
                assert not crashed, f"a rank exited before the kill step: {crashed}"
                assert time.monotonic() < deadline, "the kill step was never reached"
                time.sleep(0.05)
            for p in procs:
                os.kill(p.pid, signal.SIGKILL)  # the whole job dies: kill -9
            for p in procs:
                p.wait(timeout=TIMEOUT)
        else:
            for p in procs:
                assert p.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def predicted(root: Path, state: dict | None, world: int, workers: int, rank: int) -> list:
    """The batches (sample numbers) ``rank`` serves by the plan, from the state on."""
    s = ShardStream(root, rank=rank, world_size=world, max_tokens=900, buffer_size=8, seed=5)
    if state is not None:
        s.load_state_dict(state)
    plan = s.plan(workers)
    taken = [0] * len(plan.quota[rank])
    out = []
    for w in interleave(plan.quota[rank]).tolist():
        out.append(plan.streams[rank][w].batch(taken[w]).tolist())
        taken[w] += 1
    return out[s.resume_step(workers) :]


#: (world size, DataLoader workers, URL scheme) of each launch; all but the last are killed
STAGES = [(2, 2, "local"), (3, 0, "pipe"), (2, 1, "local")]


def test_kill_9_and_resume_at_other_world_sizes_and_worker_counts(root, tmp_path):
    """One epoch over three launches: killed, resumed at 3 ranks, killed, resumed at 2 (a chain
    of elastic resumes, the state of the first rank passed on each time)."""
    rng = random.Random(7)
    state = None
    served: Counter = Counter()
    for i, (world, workers, scheme) in enumerate(STAGES):
        expected = [predicted(root, state, world, workers, r) for r in range(world)]
        assert len({len(e) for e in expected}) == 1
        last = i == len(STAGES) - 1
        kill_step = -1 if last else rng.randrange(0, len(expected[0]) - 1)  # chosen here
        resume = None
        if state is not None:
            resume = tmp_path / f"state{i}.json"
            resume.write_text(json.dumps(state))
        out = tmp_path / f"launch{i}"
        options = {"world": world, "workers": workers, "scheme": scheme, "resume": resume}
        launch(root, out, kill_step=kill_step, **options)
        logs = [read_log(out / f"rank{r}.jsonl") for r in range(world)]
        taken = len(expected[0]) if last else kill_step + 1
        for r, log in enumerate(logs):
            assert [e["step"] for e in log] == list(range(taken))  # ranks stepped equally
            assert [e["labels"] for e in log] == expected[r][:taken]  # as the rule predicts
            assert all(e["shared"] for e in log)  # counts learned by one all-gather
        served.update(
            label
            for log in logs
            for entry in log
            for label, again in zip(entry["labels"], entry["repeat"])
            if not again
        )
        if not last:
            states = [json.loads((out / f"state{r}.json").read_text()) for r in range(world)]
            assert all(s == states[0] for s in states)  # any rank's state is the job's
            state = states[0]
    assert served == Counter(range(N))  # every sample exactly once in the epoch
