"""Preprocessed shards: WebDataset tar files of ``.npy`` members plus a per-sample index.

- ``format.py``: member names, ``.npy`` / ``.json`` encoding of one sample
- ``writer.py``: :class:`ShardWriter`, one deterministic tar written atomically;
  :func:`write_shards` for in-memory samples
- ``journal.py``: the fsynced journal that makes ``preprocess`` resumable
- ``index.py``: :class:`ShardIndex` (``index.json``, a wids shard list with per-sample columns),
  :func:`merge_indexes`, :func:`check_shards`; ``index_entry.py`` (one shard's entry, parsed and
  validated); ``columns.py`` (the memory-mapped columnar sidecar of an index above 100k samples)
- ``preprocess.py``: :func:`preprocess`, the parallel, resumable OBJ/PLY -> shards driver;
  ``settings.py`` (inputs, sizes, transforms, casts), ``pool.py`` (the ordered reader pool),
  ``resume.py`` (lock, journal resume point, final index, :func:`merge_parts` for ``--part``)

Readers over shards are :class:`hetload.data.ShardDataset` and :class:`hetload.data.ShardStream`.
"""

from hetload.shards.format import ShardError, decode_sample, encode_sample
from hetload.shards.index import ShardEntry, ShardIndex, check_shards, merge_indexes
from hetload.shards.preprocess import PreprocessResult, merge_parts, preprocess
from hetload.shards.writer import ShardWriter, write_shards

__all__ = [
    "PreprocessResult",
    "ShardEntry",
    "ShardError",
    "ShardIndex",
    "ShardWriter",
    "check_shards",
    "decode_sample",
    "encode_sample",
    "merge_indexes",
    "merge_parts",
    "preprocess",
    "write_shards",
]
