"""Counter-based random numbers for packed batches: a sample's draws depend only on its seed.

A per-sample transform on a packed batch cannot draw from one generator in batch order: a
sample's numbers would then depend on which samples came before it in the batch, and a CUDA
generator's stream differs from a CPU one. Here every random number is a pure function of
``(sample seed, stream, counter)``, computed with integer tensor ops that give the same bits on
every device (the Philox idea, with a smaller mixer):

- :func:`sample_seeds` turns ``(seed, epoch, sample key or id)`` into one 32-bit seed per sample;
- :func:`uniform` / :func:`normal` give the value of counter ``c`` of a sample's stream ``s``.

Values are held in ``int64`` tensors in ``[0, 2**32)``; every product is split so it stays below
``2**63`` (no reliance on wrap-around), so the bits are exact on CPU and CUDA alike. Floats are
made in float64 from the 32-bit integers (``(h + 0.5) / 2**32``, never 0 or 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["derive", "hash32", "mix32", "normal", "sample_seeds", "uniform"]

MASK32 = 0xFFFFFFFF
# stream numbers of the batched transforms, so two transforms never share draws
STREAMS = {
    "rotation": 1,
    "scale": 2,
    "jitter": 3,
    "flip": 4,
    "surface": 5,
    "fps": 6,
    "grid": 7,
}


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in ``[0, 2**32)``, with every partial product < 2**49."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit mixer (MurmurHash3's finalizer) on int64 tensors in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def _mix32_numpy(x: np.ndarray) -> np.ndarray:
    """:func:`mix32` on numpy uint32, where multiplication wraps by definition (CPU only)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):  # the wrap is the point
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x85EBCA6B)
        x = x ^ (x >> np.uint32(13))
        x = x * np.uint32(0xC2B2AE35)
        return x ^ (x >> np.uint32(16))


def hash32(seeds: torch.Tensor, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """The 32-bit random integer of ``counters`` (``[0, 2**32)``: a sample's rows times the
    draws per row stay far below) in stream ``stream`` of ``seeds`` (broadcasting; int64 in,
    int64 in ``[0, 2**32)`` out).

    On the CPU the same bits come from numpy's wrapping uint32 arithmetic, about 4x fewer
    operations than the split products the other devices need.
    """
    salt = stream * 0x9E3779B9 & MASK32
    on_cpu = seeds.device.type == "cpu" and counters.device.type == "cpu"
    if on_cpu and not torch.compiler.is_compiling():
        keyed = _mix32_numpy(((seeds.numpy() ^ salt) & MASK32).astype(np.uint32))
        mixed = _mix32_numpy((counters.numpy() & MASK32).astype(np.uint32))
        return torch.from_numpy(np.asarray(_mix32_numpy(keyed ^ mixed), dtype=np.int64))
    keyed = mix32((seeds ^ salt) & MASK32)
    return mix32(keyed ^ mix32(counters & MASK32))


def uniform(seeds: torch.Tensor, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """float64 uniforms in ``(0, 1)``, one per broadcast ``(seed, counter)``."""
    return (hash32(seeds, stream, counters).double() + 0.5) * (1.0 / 2**32)


def normal(seeds: torch.Tensor, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """float64 standard normals (Box-Muller on counters ``2c`` and ``2c + 1``)."""
    u1 = uniform(seeds, stream, 2 * counters)
    u2 = uniform(seeds, stream, 2 * counters + 1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2 * torch.pi) * u2)


def _key32(key: str | int) -> int:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise TypeError(f"a sample key must be a str or an int, got {type(key).__name__}")
    if isinstance(key, int):
        return key
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def sample_seeds(
    keys: Sequence[str | int] | torch.Tensor,
    seed: int = 0,
    epoch: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One seed per sample, from ``(seed, epoch, key)``: ``int64 [B]`` in ``[0, 2**32)``.

    Args:
        keys: per sample, its stable identity: the batch's ``"key"`` strings (paths), or integer
            sample ids (a list or an integer tensor, any device).
        seed, epoch: the run's seed and the current epoch (a new epoch, new draws).
        device: where the seeds go (default: the keys tensor's device, else the CPU).
    """
    if isinstance(keys, torch.Tensor):
        if keys.dtype.is_floating_point or keys.dtype == torch.bool or keys.dim() != 1:
            raise ValueError(f"sample ids must be a 1-D integer tensor, got {keys.dtype}")
        ids = keys.to(device=device if device is not None else keys.device, dtype=torch.int64)
    else:
        ids = torch.tensor([_key32(k) & ((1 << 63) - 1) for k in keys], dtype=torch.int64)
        ids = ids.to(device) if device is not None else ids
    low = mix32(ids & MASK32)
    high = mix32(((ids >> 32) & MASK32) ^ 0x5BD1E995)
    h = mix32(low ^ _mul32(high, 0x165667B1) ^ (int(seed) & MASK32))
    h = mix32(h ^ ((int(seed) >> 32) & MASK32) ^ 0x27220A95)
    return mix32(h ^ (int(epoch) & MASK32) ^ _mul32(mix32(ids.new_tensor(epoch >> 32)), 3))


def derive(seeds: torch.Tensor, step: int) -> torch.Tensor:
    """The seeds of step ``step`` of a pipeline: independent draws for each step."""
    return mix32(seeds ^ mix32(seeds.new_tensor(step + 1)))
