"""Plain numpy reference implementations, written for clarity, not speed.

Never copied from the code under test: each follows the definition in DESIGN.md directly.
"""

from __future__ import annotations

import numpy as np


def ref_pack(items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Items ``[N_i, *D]`` -> (values ``[sum N_i, *D]``, offsets int64 ``[B+1]``)."""
    offsets = [0]
    for item in items:
        offsets.append(offsets[-1] + len(item))
    values = np.concatenate(items, axis=0) if items else np.zeros((0,))
    return values, np.array(offsets, dtype=np.int64)


def ref_packed_to_padded(values: np.ndarray, offsets, max_len: int | None, fill) -> np.ndarray:
    """Row ``j`` of item ``i`` is ``values[offsets[i] + j]`` for ``j < N_i``, else ``fill``."""
    offsets = [int(o) for o in offsets]
    batch = len(offsets) - 1
    lengths = [offsets[i + 1] - offsets[i] for i in range(batch)]
    if max_len is None:
        max_len = max(lengths, default=0)
    out = np.empty((batch, max_len, *values.shape[1:]), dtype=values.dtype)
    for i in range(batch):
        for j in range(max_len):
            out[i, j] = values[offsets[i] + j] if j < lengths[i] else fill
    return out


def ref_padded_to_packed(padded: np.ndarray, offsets) -> np.ndarray:
    offsets = [int(o) for o in offsets]
    rows = []
    for i in range(len(offsets) - 1):
        for j in range(offsets[i + 1] - offsets[i]):
            rows.append(padded[i, j])
    if not rows:
        return np.zeros((0, *padded.shape[2:]), dtype=padded.dtype)
    return np.stack(rows).astype(padded.dtype)


def ref_rebase(faces: list[np.ndarray], vert_counts: list[int]) -> np.ndarray:
    """Faces of each mesh shifted by the number of vertices of the meshes before it."""
    shifted = []
    base = 0
    for f, n in zip(faces, vert_counts):
        shifted.append(f + base)
        base += n
    return np.concatenate(shifted, axis=0)
