"""Datasets: map-style and iterable sources of sample dicts."""

from hetload.data.shard_dataset import ShardDataset
from hetload.data.shard_stream import ShardStream

__all__ = ["ShardDataset", "ShardStream"]
