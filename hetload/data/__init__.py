"""Datasets: map-style and iterable sources of sample dicts."""

from hetload.data.label_map import LabelMap
from hetload.data.mesh_folder import MeshFolder
from hetload.data.scannet import ScanNetScenes
from hetload.data.semantic_kitti import SemanticKITTI
from hetload.data.shapenet import ShapeNetCore
from hetload.data.shard_dataset import ShardDataset
from hetload.data.shard_stream import ShardStream

__all__ = [
    "LabelMap",
    "MeshFolder",
    "ScanNetScenes",
    "SemanticKITTI",
    "ShapeNetCore",
    "ShardDataset",
    "ShardStream",
]
