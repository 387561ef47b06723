"""The README stays true: its commands are CI's, its example runs, its config reference is
current."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hetload import demo
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


def _python_blocks() -> list[str]:
    """The README's python blocks, less those with a test of their own: "Scenes, ShapeNet and
    LiDAR" needs the downloaded layouts (test_layouts runs it on miniature copies), "Training on
    many machines" a checkpoint path and shards (run below with both)."""
    text = re.sub(r"### Scenes, ShapeNet and LiDAR\n.*?(?=\n## )", "", README, flags=re.S)
    text = re.sub(r"## Training on many machines\n.*?(?=\n## )", "", text, flags=re.S)
    return re.findall(r"```python\n(.+?)```", text, re.S)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A folder laid out as the README assumes: demo data, configs/, and the shards of the
    command the README gives in a comment (run verbatim)."""
    root = tmp_path_factory.mktemp("readme")
    demo.generate(root / "demo", n=16, seed=0)
    shutil.copytree(REPO / "configs", root / "configs")
    command = re.search(r"#   (hetload preprocess demo/meshes shards [^\n]+)", README)
    assert command, "the README lost its preprocess command"
    argv = shlex.split(command.group(1))[1:]
    done = subprocess.run(
        [sys.executable, "-m", "hetload", *argv, "--quiet"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return root


def test_every_readme_python_block_runs_on_the_demo_data(checkout, monkeypatch):
    """The quick starts and "Your dataset", verbatim, in order, in one namespace (as a user
    pastes them one after the other), from a folder holding the demo data."""
    blocks = _python_blocks()
    assert len(blocks) >= 3, "a README python block went missing"
    monkeypatch.chdir(checkout)
    namespace: dict = {}
    for number, code in enumerate(blocks):
        if not torch.cuda.is_available():
            code = code.replace('"cuda"', '"cpu"')
        exec(compile(code, f"README.md python block {number}", "exec"), namespace)
    # what the blocks promise, checked on what they left behind
    assert namespace["ds"].classes == ["blob", "box", "sphere", "torus"]
    batch = namespace["batch"]
    assert batch.label.dtype == torch.int64 and len(batch.key) == len(batch)
    assert namespace["test"].classes == ["blob", "box", "sphere", "torus"]
    assert os.path.isdir(checkout / "shards")


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
