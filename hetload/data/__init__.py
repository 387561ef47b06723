"""Datasets: map-style and iterable sources of sample dicts."""

from hetload.data.mesh_folder import MeshFolder
from hetload.data.shard_dataset import ShardDataset
from hetload.data.shard_stream import ShardStream

__all__ = ["MeshFolder", "ShardDataset", "ShardStream"]
