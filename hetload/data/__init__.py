"""Datasets: map-style and iterable sources of sample dicts."""

from hetload.data.label_map import LabelMap
from hetload.data.labels import folder_classes
from hetload.data.mesh_folder import MeshFolder
from hetload.data.modelnet import ModelNet
from hetload.data.scannet import ScanNetScenes
from hetload.data.semantic_kitti import SemanticKITTI
from hetload.data.shapenet import ShapeNetCore
from hetload.data.shard_dataset import ShardDataset
from hetload.data.shard_stream import ShardStream
from hetload.data.threaded import ThreadedLoader
from hetload.keys import sample_key

__all__ = [
    "LabelMap",
    "MeshFolder",
    "ModelNet",
    "ScanNetScenes",
    "SemanticKITTI",
    "ShapeNetCore",
    "ShardDataset",
    "ShardStream",
    "ThreadedLoader",
    "folder_classes",
    "sample_key",
]
