"""Shared test fixtures: the real meshes beside the checkout, hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

#: ../shared/data/meshes beside the checkout (CI has it there), or $HETLOAD_MESHES (a checkout
#: elsewhere, such as a git worktree); tests skip where it is absent
SHARED_MESHES = Path(
    os.environ.get("HETLOAD_MESHES")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "meshes"
)

# Deadlines off: these machines are noisy, and a slow example is not a wrong one.
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def shared_meshes() -> Path:
    """The folder of real OBJ/PLY files written by other tools; skips the test where absent."""
    if not SHARED_MESHES.is_dir():
        pytest.skip(f"real-file corpus not found at {SHARED_MESHES}")
    return SHARED_MESHES


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests run only where CUDA is available (``pytest -m gpu``)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["compiled", "python"])
def read_path(request, monkeypatch) -> str:
    """Both batch reads of a ShardDataset: the compiled kernel (cuda/read_cpu.cpp) and the
    pure-Python one it replaces where the extension is absent (``pytestmark =
    pytest.mark.usefixtures("read_path")`` runs a whole module with both)."""
    from hetload.data import batch_read
    from hetload.ops.library import has_kernel

    if request.param == "compiled":
        if not has_kernel("read_members_", "CPU"):
            pytest.skip("the compiled extension is not built")
    else:
        monkeypatch.setattr(batch_read, "_compiled", lambda: False)
    return request.param
