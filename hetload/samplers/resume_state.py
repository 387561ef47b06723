"""The resume state both batch samplers save and check (BucketBatchSampler, FixedBatchSampler):
which epoch, how many of its batches the loop consumed, at what world size, and the history of
earlier world sizes in that epoch (elastic resume), keyed by a fingerprint of the data and the
configuration so that a state is never applied to other data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ResumeError", "check_consumed", "make_state", "read_state"]


class ResumeError(ValueError):
    """A sampler state that does not fit this sampler (other data or configuration)."""


def check_consumed(consumed: Any, total: int) -> int:
    """``consumed`` batches as an int in ``[0, total]``; ``ValueError`` otherwise."""
    if isinstance(consumed, bool) or int(consumed) != consumed or not 0 <= consumed <= total:
        raise ValueError(f"consumed must be an integer in [0, {total}], got {consumed!r}")
    return int(consumed)


def make_state(sampler: Any, consumed: int, version: int, **extra: Any) -> dict[str, Any]:
    """The state of ``sampler`` (its ``seed``, ``epoch``, ``num_replicas``, ``fingerprint`` and
    ``_history``) at ``consumed`` batches, with ``extra`` keys (``kind``)."""
    return {
        "version": version,
        **extra,
        "seed": sampler.seed,
        "epoch": sampler.epoch,
        "consumed": consumed,
        "num_replicas": sampler.num_replicas,
        "fingerprint": sampler.fingerprint,
        "history": [list(h) for h in sampler._history],
    }


def read_state(
    state: Any, *, fingerprint: Any, versions: tuple[int, ...], what: str
) -> tuple[list[list[int]], int, int]:
    """``(history, saved world size, consumed)`` of a saved ``state``, every entry checked.

    Raises:
        ResumeError: a missing key, another version, another fingerprint (``what`` says what
            it covers), or a malformed history entry.
    """
    if not isinstance(state, Mapping):
        raise ResumeError(f"a sampler state is a mapping, got {type(state).__name__}")
    keys = ("version", "seed", "epoch", "consumed", "num_replicas", "fingerprint")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ResumeError(f"sampler state is missing {missing}")
    if state["version"] not in versions:
        raise ResumeError(f"sampler state version {state['version']} is not {versions[-1]}")
    if state["fingerprint"] != fingerprint:
        raise ResumeError(
            f"sampler state was saved for {what} "
            f"(fingerprint {state['fingerprint']} != {fingerprint})"
        )
    history = [list(h) for h in state.get("history", [])]
    saved_world, consumed = state["num_replicas"], state["consumed"]
    for h in [*history, [saved_world, consumed]]:
        if (
            len(h) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in h)
            or h[0] < 1
            or h[1] < 0
        ):
            raise ResumeError(f"sampler state has a malformed history entry {h!r}")
    return history, saved_world, consumed
