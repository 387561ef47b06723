"""Datasets: map-style and iterable sources of sample dicts."""

from hetload.data.labels import folder_classes
from hetload.data.mesh_folder import MeshFolder
from hetload.data.modelnet import ModelNet
from hetload.data.shard_dataset import ShardDataset
from hetload.data.shard_stream import ShardStream
from hetload.keys import sample_key

__all__ = [
    "MeshFolder",
    "ModelNet",
    "ShardDataset",
    "ShardStream",
    "folder_classes",
    "sample_key",
]
