"""Batch samplers: which samples go together in a batch.

- :class:`BucketBatchSampler` (``bucket_sampler.py``): map-style datasets; index lists under a
  hard budget, fresh every epoch, equal steps on every DDP rank, resumable
- :func:`stream_batches` / :class:`StreamBucketer` (``stream.py``): the same rules for a stream of
  samples (an iterable dataset, a WebDataset pipeline stage), through a bounded buffer
- :class:`FixedBatchSampler` (``fixed.py``): DistributedSampler + BatchSampler's batches, with
  state (exact and elastic resume) and the padding repeats marked
- :class:`MarkedIndices` / :class:`MarkRepeats` (``repeats.py``): the few samples served twice
  to keep ranks in step, marked ``is_repeat`` in the batch
- :class:`Budget` (``cost.py``): what fits in one batch; :mod:`~hetload.samplers.plan`: the pure
  numpy planning of one epoch; :class:`SamplerStats` (``stats.py``): diagnostics
"""

from hetload.samplers.bucket_sampler import BucketBatchSampler, ResumeError
from hetload.samplers.cost import Budget
from hetload.samplers.fixed import FixedBatchSampler
from hetload.samplers.repeats import MarkedIndices, MarkRepeats
from hetload.samplers.stats import SamplerStats
from hetload.samplers.stream import FieldSize, StreamBucketer, stream_batches

__all__ = [
    "BucketBatchSampler",
    "Budget",
    "FieldSize",
    "FixedBatchSampler",
    "MarkRepeats",
    "MarkedIndices",
    "ResumeError",
    "SamplerStats",
    "StreamBucketer",
    "stream_batches",
]
