"""The README stays true: its commands are CI's, its example runs, its config reference is
current."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from hetload.config import reference

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _command_after(comment: str) -> str:
    match = re.search(rf"# {comment}[^\n]*\n(.+)", README)
    assert match, f"the README has no '# {comment}' command"
    return match.group(1).strip()


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (REPO / ".ci" / "run").read_text()
    assert _command_after("install") in ci
    assert _command_after("test") in ci


def test_the_collate_quick_start_runs():
    block = re.search(
        r"## Quick start: a drop-in `collate_fn`\n\n```python\n(.+?)```", README, re.S
    )
    assert block, "the collate quick start is missing"
    code = block.group(1)
    if not torch.cuda.is_available():
        code = code.replace('"cuda"', '"cpu"')
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    batch = namespace["batch"]
    assert len(batch) == 4 and batch.verts.padded().shape == (4, 200_000, 3)
    assert batch.sample(3)["verts"].shape == (0, 3)


def test_config_reference_document_is_current():
    doc = (REPO / "docs" / "config-reference.md").read_text()
    assert reference().strip() in doc, "regenerate docs/config-reference.md (see its first line)"


def test_the_many_machines_example_runs_and_resumes(tmp_path):
    from hetload import demo
    from hetload.shards.preprocess import preprocess

    block = re.search(r"## Training on many machines\n.+?```python\n(.+?)```", README, re.S)
    assert block, "the many-machines example is missing"
    demo.generate(tmp_path / "meshes", n=24, seed=1)
    preprocess(tmp_path / "meshes", tmp_path / "shards", max_count=4, progress=False)
    for _ in range(2):  # the second run finds the checkpoint and resumes (at its end)
        namespace = {"SHARDS": str(tmp_path / "shards"), "CKPT": str(tmp_path / "c.pt")}
        namespace["EPOCHS"] = 1
        exec(compile(block.group(1), "README.md", "exec"), namespace)
        assert (tmp_path / "c.pt").exists()
